"""Explicit pads of Conv, ConvTranspose, MaxPool and AveragePool against the source module.

Expected pads are the module's padding ('same'/'valid' included) plus any ZeroPad
module the exporter fused into the node. Pads in TF 'SAME' placement where PyTorch
pads symmetrically are called out by name: that is the classic porting bug.
"""
from __future__ import annotations

from typing import Iterator

import onnx

from pipeline.lint import Finding, rule
from pipeline.lint.context import LintContext
from pipeline.lint.padding_math import is_symmetric, module_pads, pad_module_pads, tf_same_pads, zero_pad_types

NAME = "pads"
MODULE_CLASSES = {
    "Conv": ("Conv1d", "Conv2d", "Conv3d"),
    "ConvTranspose": ("ConvTranspose1d", "ConvTranspose2d", "ConvTranspose3d"),
    "MaxPool": ("MaxPool1d", "MaxPool2d", "MaxPool3d"),
    "AveragePool": ("AvgPool1d", "AvgPool2d", "AvgPool3d"),
}


@rule(NAME)
def check(ctx: LintContext) -> Iterator[Finding]:
    for node in ctx.nodes:
        if node.op_type not in MODULE_CLASSES:
            continue
        attrs = ctx.attrs(node)
        if attrs.get("auto_pad", "NOTSET") != "NOTSET":
            continue  # the auto_pad rule covers these
        kernel = _kernel(ctx, node, attrs)
        if kernel is None:
            continue
        rank = len(kernel)
        pads = list(attrs.get("pads", [0] * 2 * rank))
        yield from _against_module(ctx, node, attrs, pads, kernel)
        yield from _tf_notes(node, attrs, pads, kernel, ctx)


def _kernel(ctx: LintContext, node: onnx.NodeProto, attrs: dict) -> list[int] | None:
    if "kernel_shape" in attrs:
        return list(attrs["kernel_shape"])
    weight = ctx.constant(node.input[1]) if len(node.input) > 1 else None
    return list(weight.shape[2:]) if weight is not None else None


def _against_module(ctx: LintContext, node, attrs: dict, pads: list[int], kernel: list[int]) -> Iterator[Finding]:
    if not ctx.has_modules:
        return
    where = ctx.attribute(node, want=MODULE_CLASSES[node.op_type])
    if where.module is None:
        yield Finding(NAME, "info", node.name, node.op_type, None, None, str(pads),
                      f"pads {pads} not checked against a module: {where.describe()}", where.describe())
        return
    rank = len(kernel)
    expected = _expected_pads(ctx, where.module, rank)
    if pads == expected:
        return
    if _padded_in_forward_code(ctx, node, where.module, pads, expected, rank):
        yield Finding(NAME, "info", node.name, node.op_type, where.module, str(expected), str(pads),
                      f"pads {pads} include padding done in the model's forward code before {where.module} "
                      "(e.g. F.pad), which the exporter folded into this node; the sizes match PyTorch", where.describe())
        return
    stride = list(attrs.get("strides", [1] * rank))
    dilation = list(attrs.get("dilations", [1] * rank))
    sizes = _input_sizes(ctx, node, rank)
    tf_same = tf_same_pads(sizes, kernel, stride, dilation) if sizes else None
    if tf_same is not None and pads == tf_same and is_symmetric(expected):
        message = (f"pads {pads} are TF 'SAME' placement (extra row/column at the bottom/right), but {where.module} pads "
                   f"symmetrically {expected}: restore the module's pads, never 'SAME', when converting")
    else:
        message = f"pads {pads} differ from {where.module}'s padding {expected}: re-export, or fix the node's pads"
    yield Finding(NAME, "error", node.name, node.op_type, where.module, str(expected), str(pads), message, where.describe())


def _expected_pads(ctx: LintContext, module_path: str, rank: int) -> list[int]:
    expected = module_pads(ctx.modules[module_path], rank)
    import torch

    for producer, consumer in ctx.edges_of(zero_pad_types(), (torch.nn.Module,)):
        if consumer == module_path:  # an exporter may fuse ZeroPad2d into the conv's pads
            fused = pad_module_pads(ctx.modules[producer], rank)
            return [a + b for a, b in zip(expected, fused)] if _fused(ctx, module_path) else expected
    return expected


def _fused(ctx: LintContext, module_path: str) -> bool:
    """True unless a Pad node for the ZeroPad module still stands in the graph."""
    producers = [p for p, c in ctx.module_edges if c == module_path]
    return not any(node.op_type == "Pad" and ctx.attribute(node).module in producers for node in ctx.nodes)


def _padded_in_forward_code(ctx: LintContext, node, module_path: str, pads: list[int], expected: list[int], rank: int) -> bool:
    """True when PyTorch's module saw an input larger than the ONNX node's by exactly the extra
    pads: code before the module padded it (transformers' TF-style padding does this)."""
    torch_shape = ctx.trace.input_shapes.get(module_path)
    onnx_sizes = _input_sizes(ctx, node, rank)
    if torch_shape is None or onnx_sizes is None or any(a < b for a, b in zip(pads, expected)):
        return False
    extra = [pads[i] + pads[i + rank] - expected[i] - expected[i + rank] for i in range(rank)]
    return list(torch_shape[-rank:]) == [size + more for size, more in zip(onnx_sizes, extra)]


def _input_sizes(ctx: LintContext, node, rank: int) -> list[int] | None:
    shape = ctx.shape_of(node.input[0])
    return shape[-rank:] if shape and len(shape) >= rank and all(d > 0 for d in shape[-rank:]) else None


def _tf_notes(node, attrs: dict, pads: list[int], kernel: list[int], ctx: LintContext) -> Iterator[Finding]:
    rank = len(kernel)
    stride = list(attrs.get("strides", [1] * rank))
    module = ctx.attribute(node, want=MODULE_CLASSES[node.op_type]).module if ctx.has_modules else None
    if not is_symmetric(pads):
        yield Finding(NAME, "info", node.name, node.op_type, module, None, str(pads),
                      f"asymmetric pads {pads}: the TF graph needs explicit padding here (a Pad op), not 'SAME'", "")
    elif any(pads) and (any(s == 2 for s in stride) or any(k % 2 == 0 for k in kernel)):
        yield Finding(NAME, "info", node.name, node.op_type, module, None, str(pads),
                      f"symmetric pads {pads} with stride {stride} / kernel {kernel}: TF 'SAME' would pad the bottom/right "
                      "instead, so the converted graph must use explicit padding", "")
