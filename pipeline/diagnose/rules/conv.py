"""Conv and Dense: strides, dilation, groups/depthwise, bias, data_format."""
from __future__ import annotations

import numpy as np

from pipeline.diagnose.corrections import Correction, Edit
from pipeline.diagnose.kinds import keras_bias, torch_bias
from pipeline.artifacts.diagnose_record import Finding
from pipeline.diagnose.rules import PairContext, rule
from pipeline.diagnose.rules.padding import _tuple


@rule("conv_attrs", "conv")
def geometry(ctx: PairContext) -> list[Finding]:
    rank = len(ctx.call.input_shape) - 2
    findings = []
    for attribute, ours, theirs in (("strides", ctx.layer.strides, ctx.module.stride),
                                    ("dilation_rate", ctx.layer.dilation_rate, ctx.module.dilation)):
        expected, actual = _tuple(theirs, rank), _tuple(ours, rank)
        if expected != actual:
            findings.append(ctx.finding(
                "conv_attrs", "error", attribute, expected, actual,
                f"{type(ctx.layer).__name__} '{ctx.layer.name}' has {attribute} {actual}, PyTorch's {ctx.pair.module} {expected}",
                correction=Correction(f"{attribute}={tuple(expected)}", edits=(Edit(ctx.layer.name, ((attribute, tuple(expected)),)),)),
            ))
    return findings + _groups(ctx) + _data_format(ctx)


def _groups(ctx: PairContext) -> list[Finding]:
    depthwise = type(ctx.layer).__name__ == "DepthwiseConv2D"
    expected = int(ctx.module.groups)
    actual = ctx.module.in_channels if depthwise else int(getattr(ctx.layer, "groups", 1))
    if expected == actual:
        return []
    return [ctx.finding("conv_attrs", "error", "groups", expected, actual,
                        f"'{ctx.layer.name}' convolves in {actual} groups, PyTorch's {ctx.pair.module} in {expected}"
                        + (" (depthwise)" if expected == ctx.module.in_channels else ""))]


def _data_format(ctx: PairContext) -> list[Finding]:
    expected = "channels_last" if ctx.layout.channels_last else "channels_first"
    actual = getattr(ctx.layer, "data_format", expected)
    if actual == expected:
        return []
    return [ctx.finding("data_format", "error", "data_format", expected, actual,
                        f"'{ctx.layer.name}' reads its input as {actual}, the port's tensors are {expected}")]


@rule("bias", "conv", "linear")
def bias(ctx: PairContext) -> list[Finding]:
    ours, theirs = keras_bias(ctx.layer), torch_bias(ctx.module)
    kernel = ctx.layer.get_weights()[0]
    if theirs is None and ours is None:
        return []
    if theirs is None:
        severity = "info" if not np.any(ours) else "error"
        return [ctx.finding("bias", severity, "use_bias", False, True,
                            f"'{ctx.layer.name}' adds a bias (max |b| {float(np.max(np.abs(ours))):.3g}); PyTorch's "
                            f"{ctx.pair.module} has none (bias=False); set use_bias=False",
                            correction=_set_bias(ctx, False, (kernel,)))]
    if ours is None:
        return [ctx.finding("bias", "error", "use_bias", True, False,
                            f"'{ctx.layer.name}' has no bias; PyTorch's {ctx.pair.module} adds one; set use_bias=True "
                            "and copy the module's bias",
                            correction=_set_bias(ctx, True, (kernel, theirs)))]
    if ours.shape == theirs.shape and np.allclose(ours, theirs, rtol=1e-5, atol=1e-7):
        return []
    return [ctx.finding("bias", "error", "bias", "PyTorch's bias", "different values",
                        f"'{ctx.layer.name}' bias differs from PyTorch's {ctx.pair.module}.bias; copy it again",
                        correction=Correction("bias copied from PyTorch", weights=((ctx.layer.name, (kernel, theirs)),)))]


def _set_bias(ctx: PairContext, use_bias: bool, weights: tuple) -> Correction:
    return Correction(f"use_bias={use_bias}", edits=(Edit(ctx.layer.name, (("use_bias", use_bias),)),),
                      weights=((ctx.layer.name, weights),))


@rule("weights", "conv", "linear", "bn", "layernorm", "groupnorm")
def weights(ctx: PairContext) -> list[Finding]:
    from pipeline.diagnose.kinds import keras_weights, torch_weights, weights_equal
    from pipeline.diagnose.mapping import BY_ORDER

    if ctx.pair.method != BY_ORDER:
        return []
    ours, theirs = keras_weights(ctx.layer), torch_weights(ctx.module)
    if weights_equal(ours, theirs):
        return []
    worst = max(float(np.max(np.abs(a - b))) for a, b in zip(ours, theirs))
    return [ctx.finding("weights", "error", "weights", "PyTorch's weights", f"max |diff| {worst:.3g}",
                        f"'{ctx.layer.name}' was mapped to {ctx.pair.module} by order and type, but its weights differ "
                        f"(max |diff| {worst:.3g}); copy them again (kernels HWIO = OIHW transposed)")]
