"""TF side: where an ONNX Conv needs explicit padding, the converted conv must have it.

Each ONNX Conv is located in the SavedModel by its weights (the TF filter is the ONNX
weight transposed to HWIO, or HWC1 for a depthwise conv). The TF conv's effective pads
are then read from its padding attribute and any Pad op in front of it: 'SAME' where
TF would place the padding differently from the ONNX pads is an error.
"""
from __future__ import annotations

from typing import Iterator

import numpy as np
import onnx

from pipeline.lint import Finding, rule
from pipeline.lint.context import LintContext
from pipeline.lint.padding_math import tf_same_pads

NAME = "tf_padding"
TF_CONVS = ("Conv2D", "DepthwiseConv2dNative")
TF_PADS = ("Pad", "PadV2", "MirrorPad")


@rule(NAME, phase="tf")
def check(ctx: LintContext) -> Iterator[Finding]:
    if ctx.tf_graph is None:
        return
    for node in ctx.nodes:
        weight = ctx.constant(node.input[1]) if node.op_type == "Conv" and len(node.input) > 1 else None
        if weight is None or weight.ndim != 4:
            continue
        attrs = ctx.attrs(node)
        pads = list(attrs.get("pads", [0, 0, 0, 0]))
        if attrs.get("auto_pad", "NOTSET") != "NOTSET" or not any(pads):
            continue
        yield from _check_conv(ctx, node, attrs, weight, pads)


def _check_conv(ctx: LintContext, node: onnx.NodeProto, attrs: dict, weight: np.ndarray, pads: list[int]) -> Iterator[Finding]:
    where = ctx.attribute(node, want=("Conv2d",)) if ctx.has_modules else None
    module, how = (where.module, where.describe()) if where else (None, "")
    tf_op = _locate(ctx, weight)
    if tf_op is None:
        yield Finding(NAME, "info", node.name, node.op_type, module, str(pads), None,
                      "could not locate this Conv in the SavedModel by its weights; padding not checked structurally "
                      "(the audit's numbers still decide)", how)
        return
    actual = _effective_pads(ctx, node, attrs, tf_op, weight)
    if actual is None:
        yield Finding(NAME, "info", node.name, node.op_type, module, str(pads), tf_op.name,
                      f"TF op {tf_op.name}: padding could not be read structurally (the audit's numbers still decide)", how)
    elif actual != pads:
        padding = tf_op.attrs["padding"]
        yield Finding(NAME, "error", node.name, node.op_type, module, str(pads), f"{actual} ({padding} in {tf_op.name})",
                      f"the converted TF conv pads {actual} where the ONNX node pads {pads}: it needs explicit padding "
                      "(a Pad op then VALID), not 'SAME'; check the converter's output", how)


def _locate(ctx: LintContext, weight: np.ndarray):
    candidates = {"Conv2D": weight.transpose(2, 3, 1, 0), "DepthwiseConv2dNative": weight.transpose(2, 3, 0, 1)}
    for tf_op in ctx.tf_graph.of_type(*TF_CONVS):
        value = ctx.tf_graph.value(tf_op.inputs[1])
        expected = candidates[tf_op.op]
        if value is not None and value.shape == expected.shape and np.allclose(value, expected, rtol=1e-6, atol=0):
            return tf_op
    return None


def _through_identities(ctx: LintContext, name: str):
    producer = ctx.tf_graph.producer(name)
    while producer is not None and producer.op == "Identity" and producer.inputs:
        producer = ctx.tf_graph.producer(producer.inputs[0])
    return producer


def _effective_pads(ctx: LintContext, node, attrs: dict, tf_op, weight: np.ndarray) -> list[int] | None:
    padding = tf_op.attrs["padding"]
    if padding == "SAME":
        shape = ctx.shape_of(node.input[0])
        if not shape or min(shape[-2:]) <= 0:
            return None
        stride = list(attrs.get("strides", [1, 1]))
        dilation = list(attrs.get("dilations", [1, 1]))
        return tf_same_pads(shape[-2:], list(weight.shape[2:]), stride, dilation)
    if padding == "EXPLICIT":
        flat = list(tf_op.attrs["explicit_paddings"].list.i)  # NHWC pairs
        return [flat[2], flat[4], flat[3], flat[5]]
    producer = _through_identities(ctx, tf_op.inputs[0])
    if producer is None or producer.op not in TF_PADS:
        # VALID with no Pad op in front: the padding may live elsewhere (folded into a slice or an
        # earlier op); the numbers tell, not the structure.
        return None
    paddings = ctx.tf_graph.value(producer.inputs[1])
    if paddings is None or paddings.shape != (4, 2):
        return None
    return [int(paddings[1, 0]), int(paddings[2, 0]), int(paddings[1, 1]), int(paddings[2, 1])]
