"""BatchNormalization: epsilon (Keras defaults to 1e-3, PyTorch to 1e-5), momentum and axis."""
from __future__ import annotations

from pipeline.diagnose.corrections import Correction, Edit
from pipeline.artifacts.diagnose_record import Finding
from pipeline.diagnose.rules import PairContext, rule, same_float32

KERAS_DEFAULT_EPSILON = 1e-3


@rule("bn_epsilon", "bn")
def epsilon(ctx: PairContext) -> list[Finding]:
    actual, expected = float(ctx.layer.epsilon), float(ctx.module.eps)
    if same_float32(actual, expected):
        return []
    default = " (Keras' default)" if same_float32(actual, KERAS_DEFAULT_EPSILON) else ""
    return [ctx.finding(
        "bn_epsilon", "error", "epsilon", expected, actual,
        f"BatchNormalization '{ctx.layer.name}' has epsilon {actual:g}{default}, PyTorch's {ctx.pair.module} uses "
        f"eps {expected:g}; set epsilon={expected:g}",
        correction=Correction(f"epsilon={expected:g}", edits=(Edit(ctx.layer.name, (("epsilon", expected),)),)),
    )]


@rule("bn_momentum", "bn")
def momentum(ctx: PairContext) -> list[Finding]:
    if ctx.module.momentum is None:
        return []  # cumulative moving average: Keras has no equivalent, and inference is unaffected
    expected, actual = 1.0 - float(ctx.module.momentum), float(ctx.layer.momentum)
    if abs(expected - actual) < 1e-6:
        return []
    return [ctx.finding(
        "bn_momentum", "warning", "momentum", round(expected, 6), actual,
        f"BatchNormalization '{ctx.layer.name}' has momentum {actual:g}; PyTorch momentum {ctx.module.momentum:g} "
        f"is Keras momentum {expected:g} (1 - momentum); affects further training only",
        correction=Correction(f"momentum={expected:g}", edits=(Edit(ctx.layer.name, (("momentum", expected),)),),
                              affects_inference=False),
    )]


@rule("bn_axis", "bn")
def axis(ctx: PairContext) -> list[Finding]:
    rank = len(ctx.call.input_shape)
    expected = rank - 1 if ctx.layout.channels_last and rank >= 3 else 1
    actual = int(ctx.layer.axis) % rank if isinstance(ctx.layer.axis, int) else ctx.layer.axis
    if actual == expected or rank < 2:
        return []
    return [ctx.finding(
        "bn_axis", "error", "axis", expected, actual,
        f"BatchNormalization '{ctx.layer.name}' normalises axis {actual}; the channels are on axis {expected}",
        correction=Correction(f"axis={expected}", edits=(Edit(ctx.layer.name, (("axis", expected),)),)),
    )]
