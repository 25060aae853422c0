"""Conv and pooling padding: where the port pads against where PyTorch pads.

TF 'same' puts the odd row/column of padding at the end (bottom/right); PyTorch pads
symmetrically. At stride 2 on an even input they differ: the port then samples the input
shifted by one row and column. The finding names the exact rows/columns, and the fix uses
'same'/'valid' where they match PyTorch, else an explicit ZeroPadding2D with a 'valid' conv.
"""
from __future__ import annotations

import math

import torch

from pipeline.diagnose.corrections import Correction, Edit, Insert
from pipeline.diagnose.graph import input_shape, producer
from pipeline.artifacts.diagnose_record import Finding
from pipeline.diagnose.rules import PairContext, rule
from pipeline.lint.padding_math import constant_pad_types, module_pads, pad_module_pads, tf_same_pads, zero_pad_types

AXES = (("rows", "top", "bottom"), ("cols", "left", "right"))
AXES_1D = (("steps", "start", "end"),)


@rule("padding", "conv", "pool")
def padding(ctx: PairContext) -> list[Finding]:
    rank = len(ctx.call.input_shape) - 2
    if rank < 1 or getattr(ctx.module, "padding_mode", "zeros") != "zeros":
        return []
    geometry = _keras_geometry(ctx.layer, rank)
    size = _spatial(ctx, rank)
    expected = torch_pads(ctx.module, rank, list(ctx.call.input_shape[2:]))
    torch_pre = _torch_pre_padding(ctx, rank)
    if torch_pre:
        expected = [a + b for a, b in zip(expected, torch_pre[1])]
    pre = _pre_padding(ctx, rank)
    own = _own_pads(ctx.layer.padding, size, geometry)  # size is the layer's own input, after any pre-padding
    actual = own if pre is None else [a + b for a, b in zip(own, pre[1])]
    findings = []
    if actual != expected:
        size = list(torch_pre[2] if torch_pre else ctx.call.input_shape[2:])
        findings.append(_mismatch(ctx, rank, expected, actual, pre, size, geometry))
    elif _counts_pads(ctx.module) and any(expected):
        findings.append(_count_include_pad(ctx, rank, expected, pre))
    return findings


def torch_pads(module: torch.nn.Module, rank: int, size: list[int]) -> list[int]:
    """PyTorch's effective pads [begins..., ends...], with ceil_mode's extra end padding."""
    pads = module_pads(module, rank)
    if not getattr(module, "ceil_mode", False):
        return pads
    kernel, stride = _tuple(module.kernel_size, rank), _tuple(module.stride or module.kernel_size, rank)
    dilation = _tuple(getattr(module, "dilation", 1), rank)
    ends = []
    for n, k, s, d, p in zip(size, kernel, stride, dilation, pads[:rank]):
        out = math.ceil((n + 2 * p - d * (k - 1) - 1) / s) + 1
        if (out - 1) * s >= n + p:
            out -= 1
        ends.append(max((out - 1) * s + d * (k - 1) + 1 - n - p, p))
    return pads[:rank] + ends


def _tuple(value, rank: int) -> list[int]:
    return list(value) if isinstance(value, (tuple, list)) else [value] * rank


def _keras_geometry(layer, rank: int) -> tuple[list[int], list[int], list[int]]:
    kernel = getattr(layer, "kernel_size", None) or getattr(layer, "pool_size")
    strides = getattr(layer, "strides", None) or kernel
    dilation = getattr(layer, "dilation_rate", 1)
    return _tuple(kernel, rank), _tuple(strides, rank), _tuple(dilation, rank)


def _spatial(ctx: PairContext, rank: int) -> list[int]:
    shape = input_shape(ctx.layer)
    dims = list(shape[1:-1]) if getattr(ctx.layer, "data_format", "channels_last") == "channels_last" else list(shape[2:])
    fallback = list(ctx.call.input_shape[2:])
    return [d if d is not None else f for d, f in zip(dims, fallback)] if len(dims) == rank else fallback


def _own_pads(mode: str, size: list[int], geometry) -> list[int]:
    kernel, strides, dilation = geometry
    return tf_same_pads(size, kernel, strides, dilation) if mode == "same" else [0] * (2 * len(size))


def _pre_padding(ctx: PairContext, rank: int) -> tuple[str, list[int]] | None:
    """A ZeroPadding layer right in front that is part of this layer's padding (not a PyTorch ZeroPad)."""
    source = producer(ctx.layer)
    if source is None or type(source).__name__ not in ("ZeroPadding2D", "ZeroPadding1D") or source.name in ctx.mapped_keras:
        return None
    pairs = source.padding if rank == 2 else (source.padding,)
    return source.name, [p[0] for p in pairs] + [p[1] for p in pairs]


def _torch_pre_padding(ctx: PairContext, rank: int) -> tuple[str, list[int], tuple] | None:
    """A ZeroPad2d (or zero ConstantPad2d) PyTorch ran right before this layer, on its input, that no
    Keras layer stands for: part of this layer's padding (the port may fold it into 'same')."""
    if ctx.previous is None:
        return None
    call, module = ctx.previous
    zero = isinstance(module, zero_pad_types()) or (isinstance(module, constant_pad_types()) and module.value == 0)
    if not zero or call.name in ctx.mapped_torch or tuple(call.output_shape) != tuple(ctx.call.input_shape):
        return None
    return call.name, pad_module_pads(module, rank), tuple(call.input_shape[2:])


def _counts_pads(module) -> bool:
    return isinstance(module, (torch.nn.AvgPool1d, torch.nn.AvgPool2d)) and module.count_include_pad


def _describe(pads: list[int], rank: int) -> str:
    axes = AXES if rank == 2 else AXES_1D
    return ", ".join(f"{axis} {pads[i]} {begin}/{pads[rank + i]} {end}" for i, (axis, begin, end) in enumerate(axes))


def _differs(expected: list[int], actual: list[int], rank: int) -> list[str]:
    axes = AXES if rank == 2 else AXES_1D
    where = []
    for i, (axis, begin, end) in enumerate(axes):
        for side, k in ((begin, i), (end, rank + i)):
            if expected[k] != actual[k]:
                where.append(f"{side} ({actual[k]} {axis[:-1] if actual[k] == 1 else axis} in the port, {expected[k]} in PyTorch)")
    return where


def _mismatch(ctx, rank, expected, actual, pre, size, geometry) -> Finding:
    kernel, strides, dilation = geometry
    mode = ctx.layer.padding + (f" after {pre[0]}" if pre else "")
    where = _differs(expected, actual, rank)
    correction = _correction(ctx, rank, expected, pre, size, geometry)
    attribute = "ceil_mode" if getattr(ctx.module, "ceil_mode", False) and expected[:rank] == actual[:rank] else "padding"
    shifted = _shift(expected, actual, rank)
    fix = f"; fix: {correction.description}" if correction else "; no built-in Keras padding matches it"
    message = (f"{type(ctx.layer).__name__} '{ctx.layer.name}' (kernel {kernel}, stride {strides}, input "
               f"{'x'.join(map(str, size))}) with padding='{mode}' pads {_describe(actual, rank)}; PyTorch's "
               f"{ctx.pair.module} pads {_describe(expected, rank)}: differs at the {', '.join(where)}{shifted}{fix}")
    detail = {"pytorch_pads": expected, "port_pads": actual, "differs_at": where, "input_size": size,
              "kernel": kernel, "strides": strides, "dilation": dilation}
    return ctx.finding("padding", "error", attribute, _short(expected, rank), f"'{mode}': {_short(actual, rank)}",
                       message, detail=detail, correction=correction)


def _short(pads: list[int], rank: int) -> str:
    """Pads as 'rows 1/1, cols 1/1' (begin/end per spatial axis) for the findings table."""
    axes = AXES if rank == 2 else AXES_1D
    return ", ".join(f"{axis} {pads[i]}/{pads[rank + i]}" for i, (axis, _, _) in enumerate(axes))


def _shift(expected: list[int], actual: list[int], rank: int) -> str:
    """How the port's windows sit against PyTorch's: fewer pads at the start move every window on."""
    moves = (("row", "lower", "higher"), ("column", "further right", "further left")) if rank == 2 else (("step", "later", "earlier"),)
    parts = []
    for i, (unit, forward, backward) in enumerate(moves):
        d = expected[i] - actual[i]
        if d:
            parts.append(f"{abs(d)} {unit}{'s' if abs(d) > 1 else ''} {forward if d > 0 else backward}")
    return f", so every output window sits {' and '.join(parts)} than PyTorch's" if parts else ""


def _count_include_pad(ctx, rank, expected, pre) -> Finding:
    correction = None
    if not getattr(ctx.module, "ceil_mode", False):
        correction = _explicit(ctx, rank, expected, pre)
    return ctx.finding(
        "pool_attrs", "error", "count_include_pad", True, False,
        f"AveragePooling '{ctx.layer.name}' leaves the padding out of each average (TF), PyTorch's {ctx.pair.module} "
        f"counts it (count_include_pad=True); " + (f"fix: {correction.description}" if correction else "no built-in equivalent"),
        correction=correction,
    )


def _correction(ctx, rank, expected, pre, size, geometry) -> Correction | None:
    kernel, strides, dilation = geometry
    is_max = "Max" in type(ctx.layer).__name__
    if pre is None and not any(expected):
        return Correction("padding='valid'", edits=(Edit(ctx.layer.name, (("padding", "valid"),)),))
    if pre is None and expected == tf_same_pads(size, kernel, strides, dilation) and not _counts_pads(ctx.module):
        return Correction("padding='same'", edits=(Edit(ctx.layer.name, (("padding", "same"),)),))
    if is_max and any(expected):
        return None  # PyTorch pads max pooling with -inf: zeros would change the maximum of negative inputs
    if getattr(ctx.module, "ceil_mode", False) and _counts_pads(ctx.module):
        return None
    return _explicit(ctx, rank, expected, pre)


def _explicit(ctx, rank, expected, pre) -> Correction:
    pairs = tuple((expected[i], expected[rank + i]) for i in range(rank))
    value = pairs if rank == 2 else pairs[0]
    kind = "ZeroPadding2D" if rank == 2 else "ZeroPadding1D"
    valid = Edit(ctx.layer.name, (("padding", "valid"),))
    text = f"{kind}({value}) in front and padding='valid'"
    if pre:
        return Correction(text, edits=(Edit(pre[0], (("padding", value),)), valid))
    config = (("padding", value),) + ((("data_format", ctx.layer.data_format),) if rank == 2 else ())
    return Correction(text, edits=(valid,), inserts=(Insert(ctx.layer.name, kind, f"{ctx.layer.name}_pad", config),))


@rule("pad_layer", "pad")
def pad_layer(ctx: PairContext) -> list[Finding]:
    """A ZeroPadding layer mapped to a PyTorch ZeroPad/ConstantPad module pads the same rows and columns."""
    rank = len(ctx.call.input_shape) - 2
    if rank not in (1, 2) or isinstance(ctx.module, constant_pad_types()) and ctx.module.value != 0:
        return []
    expected = pad_module_pads(ctx.module, rank)
    pairs = ctx.layer.padding if rank == 2 else (ctx.layer.padding,)
    actual = [p[0] for p in pairs] + [p[1] for p in pairs]
    if actual == expected:
        return []
    value = tuple((expected[i], expected[rank + i]) for i in range(rank))
    value = value if rank == 2 else value[0]
    return [ctx.finding(
        "padding", "error", "padding", _short(expected, rank), _short(actual, rank),
        f"ZeroPadding '{ctx.layer.name}' pads {_describe(actual, rank)}, PyTorch's {ctx.pair.module} "
        f"{_describe(expected, rank)}; set padding={value}",
        detail={"pytorch_pads": expected, "port_pads": actual, "differs_at": _differs(expected, actual, rank)},
        correction=Correction(f"padding={value}", edits=(Edit(ctx.layer.name, (("padding", value),)),)),
    )]
