"""LayerNorm, GroupNorm and InstanceNorm epsilon against their modules.

LayerNormalization and InstanceNormalization nodes carry `epsilon`; GroupNorm is
exported as InstanceNormalization (dynamo) or GroupNormalization, so its nodes are
checked against the GroupNorm module they belong to.
"""
from __future__ import annotations

from typing import Iterator

from pipeline.lint import Finding, rule
from pipeline.lint.rules.bn_epsilon import known_default, same_epsilon
from pipeline.lint.context import LintContext

NAME = "norm_epsilon"
NORM_OPS = {"LayerNormalization", "InstanceNormalization", "GroupNormalization"}
NORM_CLASSES = ("LayerNorm", "GroupNorm", "InstanceNorm1d", "InstanceNorm2d", "InstanceNorm3d")
ONNX_DEFAULT_EPSILON = 1e-5


@rule(NAME)
def check(ctx: LintContext) -> Iterator[Finding]:
    if not ctx.has_modules:
        return
    for node in ctx.nodes:
        if node.op_type not in NORM_OPS:
            continue
        actual = float(ctx.attrs(node).get("epsilon", ONNX_DEFAULT_EPSILON))
        where = ctx.attribute(node, want=NORM_CLASSES)
        if where.module is None:
            message = f"{node.op_type} epsilon {actual:.3g} could not be checked: {where.describe()}"
            yield Finding(NAME, "warning", node.name, node.op_type, None, None, f"{actual:.6g}", message, where.describe())
            continue
        module = ctx.modules[where.module]
        expected = float(module.eps)
        if not same_epsilon(actual, expected):
            message = (f"epsilon is {actual:.3g}{known_default(actual)} but {type(module).__name__} {where.module} uses "
                       f"eps={expected:.3g}; set the node's epsilon to {expected:.3g} (or re-export)")
            yield Finding(NAME, "error", node.name, node.op_type, where.module, f"{expected:.6g}", f"{actual:.6g}", message,
                          where.describe())
