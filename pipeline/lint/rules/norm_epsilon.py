"""LayerNorm, GroupNorm and InstanceNorm epsilon against their modules.

LayerNormalization and InstanceNormalization nodes carry `epsilon`; GroupNorm is
exported as InstanceNormalization (dynamo) or GroupNormalization, so its nodes are
checked against the GroupNorm module they belong to.
"""
from __future__ import annotations

from typing import Iterator

from pipeline.lint import Finding, rule
from pipeline.lint.epsilon import check_epsilon
from pipeline.lint.context import LintContext

NAME = "norm_epsilon"
NORM_OPS = {"LayerNormalization", "InstanceNormalization", "GroupNormalization"}
NORM_CLASSES = ("LayerNorm", "GroupNorm", "InstanceNorm1d", "InstanceNorm2d", "InstanceNorm3d")


@rule(NAME)
def check(ctx: LintContext) -> Iterator[Finding]:
    if not ctx.has_modules:
        return
    for node in ctx.nodes:
        if node.op_type in NORM_OPS:
            finding, _ = check_epsilon(ctx, node, NAME, NORM_CLASSES)
            if finding:
                yield finding
