"""Constants whose float16 rounding changes what they guard: comparison thresholds, Clip bounds,
Max/Min floors and ceilings, the value an Equal tests for.

A TFLite fp16 file compares a float32 activation with the float16 rounding of the constant
(0.1 is held as 0.0999755859375).
- warning: Equal: a value computed as exactly the float32 constant no longer equals it;
- info: a threshold or a bound moves by the rounding (at most 1/2048 of it): inputs between the two
  values compare, or are clamped, the other way.
Values float16 flushes or clamps are the fp16_underflow and fp16_overflow rules' findings.
"""
from __future__ import annotations

from typing import Iterator

import numpy as np

from pipeline.lint import Finding, rule
from pipeline.lint.context import LintContext
from pipeline.lint.fp16 import Slot, as_stored, in_module, module_of, overflows, slots, underflows

NAME = "fp16_guard"
COMPARISONS = ("Less", "LessOrEqual", "Greater", "GreaterOrEqual")
BOUNDS = {"Clip": (1, 2), "Max": None, "Min": None}  # op -> inputs that are bounds (None: any)


@rule(NAME)
def check(ctx: LintContext) -> Iterator[Finding]:
    for slot in slots(ctx):
        role = _role(slot)
        if role is None:
            continue
        values = slot.values.astype(np.float32).astype(np.float64)
        moved = (as_stored(values) != values) & ~underflows(values) & ~overflows(values)
        if moved.any():
            yield _finding(ctx, slot, role, values.reshape(-1)[moved.reshape(-1)])


def _role(slot: Slot) -> str | None:
    op = slot.node.op_type
    if slot.is_attribute:
        return None
    if op == "Equal":
        return "the value Equal tests for"
    if op in COMPARISONS:
        return f"the {op} threshold"
    if op in BOUNDS and (BOUNDS[op] is None or slot.index in BOUNDS[op]):
        return f"the {op} bound"
    return None


def _finding(ctx: LintContext, slot: Slot, role: str, moved: np.ndarray) -> Finding:
    node = slot.node
    module, how = module_of(ctx, node)
    value = float(moved[0])
    stored = float(as_stored(np.asarray(value)))
    count = f" (and {moved.size - 1} more)" if moved.size > 1 else ""
    head = f"{node.op_type}{in_module(module)}: {role}, {value:.9g}{count}, is stored as {stored:.9g} in float16"
    if node.op_type == "Equal":
        message = f"{head}: an input of exactly {value:.9g} no longer equals it; compare with a tolerance, or keep it in float32"
        severity = "warning"
    else:
        message = (f"{head}: inputs between the two values compare or clamp the other way; use a float16-representable "
                   f"value ({stored:.9g}) if the boundary matters")
        severity = "info"
    return Finding(NAME, severity, node.name, node.op_type, module, f"{value:.9g}", f"{stored:.9g}", message, how)
