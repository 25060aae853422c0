"""LayerNormalization and GroupNormalization: epsilon (Keras 1e-3, PyTorch 1e-5) and groups."""
from __future__ import annotations

from pipeline.diagnose.corrections import Correction, Edit
from pipeline.artifacts.diagnose_record import Finding
from pipeline.diagnose.rules import PairContext, rule, same_float32


@rule("norm_epsilon", "layernorm", "groupnorm")
def epsilon(ctx: PairContext) -> list[Finding]:
    actual, expected = float(ctx.layer.epsilon), float(ctx.module.eps)
    if same_float32(actual, expected):
        return []
    kind = type(ctx.layer).__name__
    return [ctx.finding(
        "norm_epsilon", "error", "epsilon", expected, actual,
        f"{kind} '{ctx.layer.name}' has epsilon {actual:g}, PyTorch's {ctx.pair.module} uses eps {expected:g}; "
        f"set epsilon={expected:g}",
        correction=Correction(f"epsilon={expected:g}", edits=(Edit(ctx.layer.name, (("epsilon", expected),)),)),
    )]


@rule("norm_groups", "groupnorm")
def groups(ctx: PairContext) -> list[Finding]:
    expected, actual = int(ctx.module.num_groups), int(ctx.layer.groups)
    if expected == actual:
        return []
    return [ctx.finding(
        "norm_groups", "error", "groups", expected, actual,
        f"GroupNormalization '{ctx.layer.name}' has {actual} groups, PyTorch's {ctx.pair.module} {expected}; set groups={expected}",
        correction=Correction(f"groups={expected}", edits=(Edit(ctx.layer.name, (("groups", expected),)),)),
    )]
