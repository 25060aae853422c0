"""Explicit pads of Conv, ConvTranspose, MaxPool and AveragePool against the source module.

Expected pads are the module's padding ('same'/'valid' included) plus any ZeroPad
module the exporter fused into the node. Where they differ, the rule judges the padding
PyTorch really applied there, measured in a forward pass (model/torch_padding.py): a
dynamic 'SAME' pad in the module's forward (transformers' BiT) or F.pad in a parent's,
folded into the node by the exporter, is correct. Pads in TF 'SAME' placement where
PyTorch pads symmetrically are called out by name: that is the classic porting bug.
Where the applied padding cannot be known, the finding is a warning that says so.
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
    applied = ctx.trace.padding.get(where.module)
    truth, why = _applied_pads(ctx, node, applied, rank)
    if pads == (expected if truth is None else truth):
        if pads != expected:
            yield _padded_before(ctx, node, where, pads, expected, applied)
        return
    if truth is None and _padded_in_forward_code(ctx, node, where.module, pads, expected, rank):
        yield _padded_before(ctx, node, where, pads, expected, applied)
        return
    if truth is None and (why or _runs_own_code(ctx.modules[where.module])):
        why = why or ctx.trace.padding_unmeasured or (f"{type(ctx.modules[where.module]).__name__} runs forward code "
                                                      "of its own, and the forward pass saw no conv or pool call of it")
        yield Finding(NAME, "warning", node.name, node.op_type, where.module, str(expected), str(pads),
                      f"pads {pads} differ from {where.module}'s padding {expected}, and the padding PyTorch really "
                      f"applies there could not be measured ({why}): this lint cannot tell whether they are right; "
                      "the audit's numbers can", where.describe())
        return
    yield _wrong(ctx, node, attrs, pads, kernel, where, expected if truth is None else truth, truth not in (None, expected))


def _applied_pads(ctx: LintContext, node, applied, rank: int) -> tuple[list[int] | None, str]:
    """The pads this node must have by the padding PyTorch was measured to apply (model/torch_padding.py), or
    None and why not. The node's input size tells whether the pad done just before the call is in the node's
    pads (the exporter folded it in) or before the node (a Pad node, or whatever the exporter made of it)."""
    if applied is None or applied.unknown:
        return None, applied.unknown if applied is not None else ""
    sizes = _input_sizes(ctx, node, rank)
    folded = sizes is not None and tuple(sizes) == applied.unpadded_sizes
    if (sizes is not None and tuple(sizes) == applied.sizes) or (sizes is None and _after_pad_node(ctx, node)):
        return list(applied.own), ""
    if applied.total is not None and (folded or sizes is None):
        return applied.total, ""
    if folded or sizes is None:
        return None, ("its input was padded just before the call, with a pad its pads cannot hold (not constant "
                      "zeros, or before a pool, whose pads are left out of its window)")
    return None, (f"the node's input {sizes} is neither the {list(applied.sizes)} PyTorch's call received nor the "
                  "size before the pads done just before it")


def _padded_before(ctx: LintContext, node, where, pads: list[int], expected: list[int], applied) -> Finding:
    """The note for pads that differ from the module's own because of padding done before its conv or pool call."""
    if applied is None or applied.before is None or not any(applied.before):
        message = (f"pads {pads} include padding done in the model's forward code before {where.module} "
                   "(e.g. F.pad), which the exporter folded into this node; the sizes match PyTorch")
    else:
        message = (f"pads {pads} are the padding PyTorch applies at {where.module}, measured in a forward pass: its "
                   f"call's own {list(applied.own)} plus {list(applied.before)} padded just before it (in forward "
                   "code or by a pad module), which the exporter folded into this node")
    return Finding(NAME, "info", node.name, node.op_type, where.module, str(expected), str(pads), message, where.describe())


def _wrong(ctx: LintContext, node, attrs: dict, pads: list[int], kernel: list[int], where, expected: list[int],
           measured: bool) -> Finding:
    rank = len(kernel)
    stride = list(attrs.get("strides", [1] * rank))
    dilation = list(attrs.get("dilations", [1] * rank))
    sizes = _input_sizes(ctx, node, rank)
    tf_same = tf_same_pads(sizes, kernel, stride, dilation) if sizes else None
    if tf_same is not None and pads == tf_same and is_symmetric(expected):
        message = (f"pads {pads} are TF 'SAME' placement (extra row/column at the bottom/right), but {where.module} pads "
                   f"symmetrically {expected}: restore the module's pads, never 'SAME', when converting")
    elif measured:
        message = (f"pads {pads} differ from the padding PyTorch applies at {where.module}, {expected} (measured in a "
                   "forward pass, with what its forward code pads): re-export, or fix the node's pads")
    else:
        message = f"pads {pads} differ from {where.module}'s padding {expected}: re-export, or fix the node's pads"
    return Finding(NAME, "error", node.name, node.op_type, where.module, str(expected), str(pads), message, where.describe())


def _after_pad_node(ctx: LintContext, node) -> bool:
    producer = next((n for n in ctx.nodes if node.input[0] in n.output), None)
    return producer is not None and producer.op_type == "Pad"


def _runs_own_code(module) -> bool:
    """True when the module's forward is not PyTorch's own (or it has submodules): it may pad in forward."""
    import torch

    base = next(c for c in type(module).__mro__ if c.__module__.startswith("torch.nn.") or c is torch.nn.Module)
    return type(module).forward is not base.forward or any(True for _ in module.children())


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
