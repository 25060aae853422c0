"""auto_pad: SAME_LOWER has no TensorFlow equivalent; SAME_UPPER is suspicious in a PyTorch export
unless the module itself uses padding='same' (the TorchScript exporter writes that as SAME_UPPER)."""
from __future__ import annotations

from typing import Iterator

from pipeline.lint import Finding, rule
from pipeline.lint.context import LintContext

NAME = "auto_pad"
PADDED_OPS = {"Conv", "ConvTranspose", "MaxPool", "AveragePool", "LpPool", "ConvInteger", "QLinearConv"}


@rule(NAME)
def check(ctx: LintContext) -> Iterator[Finding]:
    for node in ctx.nodes:
        if node.op_type not in PADDED_OPS:
            continue
        auto_pad = ctx.attrs(node).get("auto_pad", "NOTSET")
        if auto_pad == "SAME_LOWER":
            where = ctx.attribute(node)
            yield Finding(NAME, "error", node.name, node.op_type, where.module, "NOTSET with explicit pads", auto_pad,
                          "auto_pad SAME_LOWER puts the extra padding first; TensorFlow has no equivalent: "
                          "replace it with explicit pads", where.describe())
        elif auto_pad == "SAME_UPPER" and ctx.from_pytorch:
            where = ctx.attribute(node)
            if where.module is not None and getattr(ctx.modules[where.module], "padding", None) == "same":
                continue  # PyTorch's 'same' also puts the odd extra at the end
            yield Finding(NAME, "warning", node.name, node.op_type, where.module, "NOTSET with explicit pads", auto_pad,
                          "auto_pad SAME_UPPER (TF 'SAME' placement) in a model exported from PyTorch, which pads "
                          "explicitly: check that the graph was not edited, and compare the numbers", where.describe())
