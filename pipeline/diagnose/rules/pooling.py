"""Pooling: window and stride (padding, ceil_mode and count_include_pad are in padding.py)."""
from __future__ import annotations

from pipeline.diagnose.corrections import Correction, Edit
from pipeline.artifacts.diagnose_record import Finding
from pipeline.diagnose.rules import PairContext, rule
from pipeline.diagnose.rules.padding import _tuple


@rule("pool_attrs", "pool")
def window(ctx: PairContext) -> list[Finding]:
    rank = len(ctx.call.input_shape) - 2
    findings = []
    is_max = "Max" in type(ctx.layer).__name__
    if is_max != ("Max" in type(ctx.module).__name__):
        findings.append(ctx.finding("pool_attrs", "error", "type", type(ctx.module).__name__, type(ctx.layer).__name__,
                                    f"'{ctx.layer.name}' is {type(ctx.layer).__name__}, PyTorch's {ctx.pair.module} "
                                    f"is {type(ctx.module).__name__}"))
    for attribute, ours, theirs in (("pool_size", ctx.layer.pool_size, ctx.module.kernel_size),
                                    ("strides", ctx.layer.strides, ctx.module.stride or ctx.module.kernel_size)):
        expected, actual = _tuple(theirs, rank), _tuple(ours, rank)
        if expected != actual:
            findings.append(ctx.finding(
                "pool_attrs", "error", attribute, expected, actual,
                f"'{ctx.layer.name}' has {attribute} {actual}, PyTorch's {ctx.pair.module} {expected}",
                correction=Correction(f"{attribute}={tuple(expected)}", edits=(Edit(ctx.layer.name, ((attribute, tuple(expected)),)),)),
            ))
    return findings
