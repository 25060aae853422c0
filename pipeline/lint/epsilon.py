"""Epsilon checks shared by the normalisation rules (bn_epsilon, norm_epsilon, tf_bn_epsilon)."""
from __future__ import annotations

import numpy as np
import onnx

from pipeline.lint import Finding
from pipeline.lint.context import LintContext

ONNX_DEFAULT_EPSILON = 1e-5
KNOWN_DEFAULTS = {1e-3: "Keras/TensorFlow's default", 1e-5: "PyTorch's default"}


def same_epsilon(a: float, b: float) -> bool:
    return np.float32(a) == np.float32(b)


def evident_epsilon(estimate: float) -> float:
    """The value an estimated epsilon evidently is: 9.99e-06 from folded float32 weights is 1e-05.
    Rounded to one significant digit when that is within 2%; otherwise the estimate itself."""
    if not np.isfinite(estimate) or estimate <= 0:
        return estimate
    rounded = float(f"{estimate:.1g}")
    return rounded if abs(estimate - rounded) <= 0.02 * rounded else estimate


def known_default(eps: float) -> str:
    for value, owner in KNOWN_DEFAULTS.items():
        if abs(eps - value) <= 0.05 * value:
            return f" ({owner})"
    return ""


def check_epsilon(ctx: LintContext, node: onnx.NodeProto, rule: str, classes: tuple[str, ...],
                  by_class: bool = True) -> tuple[Finding | None, str | None]:
    """A norm node's `epsilon` against the `eps` of the module it came from (one of `classes`):
    an error when they differ at float32 precision, a warning when no module can be named.
    The message names the module by its class ("LayerNorm blocks.0") or as "module post".
    Returns the finding (or None) and the module it was checked against."""
    actual = float(ctx.attrs(node).get("epsilon", ONNX_DEFAULT_EPSILON))
    where = ctx.attribute(node, want=classes)
    if where.module is None:
        message = f"{node.op_type} epsilon {actual:.3g} could not be checked: {where.describe()}"
        return Finding(rule, "warning", node.name, node.op_type, None, None, f"{actual:.6g}", message, where.describe()), None
    module = ctx.modules[where.module]
    expected = float(module.eps)
    if same_epsilon(actual, expected):
        return None, where.module
    named = f"{type(module).__name__} {where.module}" if by_class else f"module {where.module}"
    message = (f"epsilon is {actual:.3g}{known_default(actual)} but {named} uses "
               f"eps={expected:.3g}; set the node's epsilon to {expected:.3g} (or re-export the model)")
    return Finding(rule, "error", node.name, node.op_type, where.module, f"{expected:.6g}", f"{actual:.6g}", message,
                   where.describe()), where.module
