"""BatchNorm epsilon: every BatchNormalization node, and every BatchNorm folded into a Conv.

A BatchNormalization node's `epsilon` must equal its module's `eps` at float32
precision (1e-5 is stored as 9.99999974738e-06). When the exporter folded the
BatchNorm into the preceding Conv (the dynamo default), the folded weights must
equal W*g/sqrt(var+eps) and the bias (b-mean)*g/sqrt(var+eps)+beta with the
module's eps; otherwise the epsilon the weights imply is reported.
"""
from __future__ import annotations

from typing import Iterator

import numpy as np
import onnx

from pipeline.lint import Finding, rule
from pipeline.lint.context import LintContext
from pipeline.lint.epsilon import check_epsilon, evident_epsilon, known_default

NAME = "bn_epsilon"
BN_CLASSES = ("BatchNorm1d", "BatchNorm2d", "BatchNorm3d", "SyncBatchNorm")
# Folded weights are products of float32 values: a few ULPs of relative noise (~1e-7).
# An epsilon off by 1e-5 on a variance of 1 already moves them by ~5e-6.
FOLD_RTOL = 2e-6


@rule(NAME)
def check(ctx: LintContext) -> Iterator[Finding]:
    if not ctx.has_modules:
        return
    checked: set[str] = set()
    for node in ctx.nodes:
        if node.op_type == "BatchNormalization":
            finding, module = _check_node(ctx, node)
            checked.add(module or "")
            if finding:
                yield finding
    import torch  # only with a PyTorch model (see padding_math.py)

    convs = (torch.nn.Conv1d, torch.nn.Conv2d, torch.nn.Conv3d)
    for conv_path, bn_path in ctx.edges_of(convs, (torch.nn.modules.batchnorm._BatchNorm,)):
        if bn_path not in checked:
            yield from _check_fused(ctx, conv_path, bn_path)


def _check_node(ctx: LintContext, node: onnx.NodeProto) -> tuple[Finding | None, str | None]:
    return check_epsilon(ctx, node, NAME, BN_CLASSES, by_class=False)


def _check_fused(ctx: LintContext, conv_path: str, bn_path: str) -> Iterator[Finding]:
    conv, bn = ctx.modules[conv_path], ctx.modules[bn_path]
    weight = conv.weight.detach().numpy().astype(np.float64)
    # A Conv that feeds a BatchNormalization node has nothing folded in (that node could not be attributed).
    unfused = {node.input[0] for node in ctx.nodes if node.op_type == "BatchNormalization"}
    candidates = [(node, fit) for node in ctx.nodes if node.op_type == "Conv" and node.output[0] not in unfused
                  for fit in [_fold_fit(ctx, node, weight)] if fit is not None]
    if not candidates:
        message = (f"no BatchNormalization node attributed to {bn_path} and no Conv with it folded in was found; "
                   "its eps was not checked structurally")
        yield Finding(NAME, "info", "", "Conv", bn_path, f"{bn.eps:.6g}", None, message, "no matching node")
        return
    if len(candidates) > 1:
        names = [node.name for node, _ in candidates]
        message = f"{len(candidates)} Conv nodes fit {conv_path}+{bn_path} equally ({names}); attribution is ambiguous, not checked"
        yield Finding(NAME, "warning", names[0], "Conv", bn_path, f"{bn.eps:.6g}", None, message, "ambiguous: initializer values")
        return
    node, scale = candidates[0]
    yield from _compare_fold(ctx, node, scale, conv, bn, bn_path)


def _fold_fit(ctx: LintContext, node: onnx.NodeProto, weight: np.ndarray) -> np.ndarray | None:
    """Per-output-channel scale s with folded == s * weight, or None if this Conv is not that fold."""
    folded = ctx.constant(node.input[1]) if len(node.input) > 1 else None
    if folded is None or folded.shape != weight.shape:
        return None
    folded = folded.astype(np.float64).reshape(len(weight), -1)
    flat = weight.reshape(len(weight), -1)
    usable = np.abs(flat) > 1e-6 * np.abs(flat).max()
    if not _may_fit(folded, flat, usable):
        return None
    return median_fit(folded, flat, usable)


def median_fit(folded: np.ndarray, flat: np.ndarray, usable: np.ndarray) -> np.ndarray | None:
    """Each channel's median of folded / weight over its usable weights (0 where it has none), if every folded
    weight is within 1e-5 * max|folded| of that scale times its weight; else None."""
    scale = np.array([np.median(folded[c][usable[c]] / flat[c][usable[c]]) if usable[c].any() else 0.0 for c in range(len(flat))])
    residual = np.abs(folded - scale[:, None] * flat)
    return scale if residual.max() <= 1e-5 * max(np.abs(folded).max(), 1e-12) else None


def _may_fit(folded: np.ndarray, flat: np.ndarray, usable: np.ndarray) -> bool:
    """A cheap, vectorised test that rules out most Convs of the same shape before median_fit (on RegNet-400MF,
    4,500 pairs of a BatchNorm and a Conv of its shape: 3.5 s of the lint's rules under the profiler). Each
    channel's scale s' is taken at its largest weight w* instead of as the median s, and is 0, as there, for
    a channel with no usable weight. It never rules out a Conv that median_fit accepts: if every
    |folded - s*w| <= t (t = 1e-5 * max|folded|), then |s' - s| <= t/|w*|, so every |folded - s'*w| is
    within 2t. The bound allowed here is 10t."""
    rows = np.arange(len(flat))
    largest = np.abs(flat).argmax(axis=1)
    at_largest = flat[rows, largest]
    scale = np.where(usable.any(axis=1), folded[rows, largest] / np.where(at_largest == 0, 1.0, at_largest), 0.0)
    return np.abs(folded - scale[:, None] * flat).max() <= 1e-4 * max(np.abs(folded).max(), 1e-12)


def _compare_fold(ctx, node, scale, conv, bn, bn_path) -> Iterator[Finding]:
    gamma = bn.weight.detach().numpy().astype(np.float64) if bn.affine else np.ones(bn.num_features)
    beta = bn.bias.detach().numpy().astype(np.float64) if bn.affine else np.zeros(bn.num_features)
    mean, var = bn.running_mean.numpy().astype(np.float64), bn.running_var.numpy().astype(np.float64)
    expected_scale = gamma / np.sqrt(var + bn.eps)
    deviation = np.median(np.abs(scale / expected_scale - 1.0))
    where = ctx.attribute(node).describe()
    if deviation > FOLD_RTOL:
        estimate = float(np.median((gamma / scale) ** 2 - var))
        implied = evident_epsilon(estimate)
        message = (f"BatchNorm {bn_path} is folded into this Conv with epsilon ~{implied:.3g}{known_default(implied)} "
                   f"(estimated {estimate:.3g} from the folded weights), but the module uses eps={bn.eps:.3g}; "
                   f"re-export the model (the folded weights are off by {deviation:.2g} relative)")
        yield Finding(NAME, "error", node.name, node.op_type, bn_path, f"{bn.eps:.6g}", f"{implied:.6g}", message, where)
        return
    bias = ctx.constant(node.input[2]).astype(np.float64) if len(node.input) > 2 and node.input[2] else np.zeros(len(scale))
    conv_bias = conv.bias.detach().numpy().astype(np.float64) if conv.bias is not None else 0.0
    expected_bias = (conv_bias - mean) * expected_scale + beta
    if not np.allclose(bias, expected_bias, rtol=1e-4, atol=1e-5):
        worst = float(np.max(np.abs(bias - expected_bias)))
        message = (f"the bias folded from BatchNorm {bn_path} differs from (b-mean)*g/sqrt(var+eps)+beta by up to {worst:.3g}; "
                   "check running_mean/bias in the exported weights, or re-export")
        yield Finding(NAME, "error", node.name, node.op_type, bn_path, "folded bias", f"off by {worst:.3g}", message, where)
