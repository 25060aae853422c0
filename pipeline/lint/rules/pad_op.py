"""Pad nodes: mode and constant value against the padding module (constant, reflect, replicate, circular)."""
from __future__ import annotations

from typing import Iterator

import numpy as np

from pipeline.lint import Finding, rule
from pipeline.lint.context import LintContext
from pipeline.lint.padding_math import pad_module_pads

NAME = "pad_op"
MODES = {"ZeroPad": "constant", "ConstantPad": "constant", "ReflectionPad": "reflect",
         "ReplicationPad": "edge", "CircularPad": "wrap"}
PAD_CLASSES = tuple(f"{prefix}{d}d" for prefix in MODES for d in (1, 2, 3))


@rule(NAME)
def check(ctx: LintContext) -> Iterator[Finding]:
    if not ctx.has_modules:
        return
    for node in ctx.nodes:
        if node.op_type != "Pad":
            continue
        where = ctx.attribute(node, want=PAD_CLASSES)
        if where.module is None:
            continue  # functional F.pad calls have no module to compare with
        module = ctx.modules[where.module]
        yield from _mode(ctx, node, module, where)
        yield from _pads(ctx, node, module, where)


def _mode(ctx, node, module, where) -> Iterator[Finding]:
    want = MODES[type(module).__name__[:-2]]
    have = ctx.attrs(node).get("mode", "constant")
    if have != want:
        yield Finding(NAME, "error", node.name, "Pad", where.module, want, have,
                      f"Pad mode is '{have}' but {where.module} is {type(module).__name__} ('{want}'): re-export", where.describe())
        return
    if want == "constant":
        value = ctx.constant(node.input[2]) if len(node.input) > 2 and node.input[2] else np.zeros(())
        expected = float(getattr(module, "value", 0.0))
        if value is not None and float(value.reshape(-1)[0] if value.size else 0.0) != expected:
            yield Finding(NAME, "error", node.name, "Pad", where.module, f"{expected:g}", f"{float(value.reshape(-1)[0]):g}",
                          f"Pad constant value differs from {where.module}.value={expected:g}: re-export", where.describe())


def _pads(ctx, node, module, where) -> Iterator[Finding]:
    pads = ctx.constant(node.input[1]) if len(node.input) > 1 else None
    if pads is None:
        yield Finding(NAME, "info", node.name, "Pad", where.module, None, "computed at run time",
                      "Pad amounts are computed at run time here; they were not checked structurally (the audit still compares numbers)",
                      where.describe())
        return
    pads = [int(p) for p in pads]
    rank = len(pads) // 2
    spatial = len(module.padding) // 2 if isinstance(module.padding, (tuple, list)) else rank - 2
    expected_spatial = pad_module_pads(module, spatial)
    actual_spatial = pads[rank - spatial: rank] + pads[2 * rank - spatial:]
    if actual_spatial != expected_spatial:
        yield Finding(NAME, "error", node.name, "Pad", where.module, str(expected_spatial), str(actual_spatial),
                      f"Pad amounts {actual_spatial} differ from {where.module}.padding {list(module.padding)}: re-export",
                      where.describe())
