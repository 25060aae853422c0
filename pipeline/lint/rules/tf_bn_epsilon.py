"""TF side: each BatchNormalization node's epsilon survives conversion.

onnx2tf lowers BatchNormalization to tf.nn.batch_normalization, whose graph adds
epsilon to the variance constant (`.../batchnorm/add`), to FusedBatchNorm ops with an
`epsilon` attribute, or folds it into a Mul by gamma/sqrt(var+eps). The node is
located by its variance values, or by a Mul constant that fits gamma and variance.
(A BatchNorm folded into a Conv carries its epsilon in the weights, which the
tf_padding rule matches exactly.)
"""
from __future__ import annotations

from typing import Iterator

import numpy as np

from pipeline.lint import Finding, rule
from pipeline.lint.epsilon import ONNX_DEFAULT_EPSILON, same_epsilon
from pipeline.lint.context import LintContext

NAME = "tf_bn_epsilon"
FUSED_BN = ("FusedBatchNorm", "FusedBatchNormV2", "FusedBatchNormV3")


@rule(NAME, phase="tf")
def check(ctx: LintContext) -> Iterator[Finding]:
    if ctx.tf_graph is None:
        return
    for node in ctx.nodes:
        if node.op_type != "BatchNormalization":
            continue
        expected = float(ctx.attrs(node).get("epsilon", ONNX_DEFAULT_EPSILON))
        variance = ctx.constant(node.input[4]) if len(node.input) > 4 else None
        gamma = ctx.constant(node.input[1])
        found = _tf_epsilon(ctx, variance) if variance is not None else None
        found = found or (_folded_epsilon(ctx, gamma, variance, expected) if gamma is not None and variance is not None else None)
        module = ctx.attribute(node).module if ctx.has_modules else None
        if found is None:
            yield Finding(NAME, "info", node.name, node.op_type, module, f"{expected:.6g}", None,
                          "could not locate this BatchNormalization in the SavedModel; its epsilon was not checked "
                          "structurally (the audit's numbers still decide)", "")
        elif not same_epsilon(found[0], expected):
            yield Finding(NAME, "error", node.name, node.op_type, module, f"{expected:.6g}", f"{found[0]:.6g} in {found[1]}",
                          f"the converted TF graph uses epsilon {found[0]:.3g} where the ONNX node has {expected:.3g}; "
                          "check the converter's output", "")


def _tf_epsilon(ctx: LintContext, variance: np.ndarray) -> tuple[float, str] | None:
    graph = ctx.tf_graph
    flat = variance.reshape(-1)
    for op in graph.of_type(*FUSED_BN):
        value = graph.value(op.inputs[4])
        if value is not None and value.size == flat.size and np.allclose(value.reshape(-1), flat):
            return float(op.attrs["epsilon"]), op.name
    for op in graph.of_type("AddV2", "Add"):
        values = [graph.value(name) for name in op.inputs[:2]]
        if any(v is None for v in values):
            continue
        for first, second in (values, values[::-1]):
            if first.size == flat.size and np.allclose(first.reshape(-1), flat) and second.size == 1:
                return float(second.reshape(-1)[0]), op.name
    return None


def _folded_epsilon(ctx: LintContext, gamma: np.ndarray, variance: np.ndarray, expected: float) -> tuple[float, str] | None:
    """A Mul by gamma/sqrt(var+eps): the epsilon it was computed with, if one fits every channel."""
    gamma, variance = gamma.astype(np.float64).reshape(-1), variance.astype(np.float64).reshape(-1)
    usable = np.abs(gamma) > 1e-6
    for op in ctx.tf_graph.of_type("Mul"):
        for name in op.inputs[:2]:
            scale = ctx.tf_graph.value(name)
            if scale is None or scale.size != gamma.size or not usable.any():
                continue
            scale = scale.astype(np.float64).reshape(-1)
            if np.allclose(scale, gamma / np.sqrt(variance + expected), rtol=1e-5, atol=0):
                return expected, op.name
            implied = (gamma[usable] / scale[usable]) ** 2 - variance[usable]
            if np.all(implied > 0) and np.ptp(implied) <= 0.05 * np.median(implied) + 1e-6:
                return float(np.median(implied)), op.name
    return None
