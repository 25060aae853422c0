"""Constants float16 flushes to zero or to a subnormal, where that can make Inf or NaN.

Judged only where a small value protects against a zero: a normalisation `epsilon`, or a constant
added to (Add, Sum), or a floor taken by (Max, Clip's min), a value that Sqrt, Reciprocal, Log, a
Div's denominator or Pow's base then reads, or a Div's constant denominator itself.
- warning: the value is stored as 0 (|x| < 2.98e-08), so that guard is gone: Rsqrt(0) is Inf and
  0 * Inf is NaN on a zero-variance row (an all-zeros or constant input);
  (a BatchNormalization epsilon only where a channel's variance is below 6.1e-05: converters fold the
  constant variance plus epsilon in float32 before storing it);
- info: it is stored as a subnormal (below 6.1035e-05, the smallest normal float16): still above
  zero, so no Inf, but held with fewer significant bits.
Ordinary weights are not reported: a conv weight of 1e-6 that becomes subnormal costs precision,
which the audit measures, and cannot make Inf or NaN.
"""
from __future__ import annotations

from typing import Iterator

import numpy as np

from pipeline.lint import Finding, rule
from pipeline.lint.context import LintContext
from pipeline.lint.fp16 import (FP16_TINY, FP16_ZERO_BELOW, Slot, as_stored, consumers, fmt, in_module, module_of,
                                readers, slots, underflows, zero_sensitive)

NAME = "fp16_underflow"
GUARD_OPS = {"Add": (0, 1), "Sum": None, "Max": None, "Clip": (1,)}  # op -> inputs that can hold an epsilon (None: any)
CURE = f"raise it to {FP16_TINY:.2g} (float16's smallest normal) or keep it in float32"


@rule(NAME)
def check(ctx: LintContext) -> Iterator[Finding]:
    users = consumers(ctx)
    for slot in slots(ctx):
        small = underflows(slot.values)
        if not small.any():
            continue
        consequence = _consequence(ctx, users, slot)
        if consequence is not None:
            yield _finding(ctx, slot, small, consequence)


def _consequence(ctx: LintContext, users: dict, slot: Slot) -> str | None:
    """What a zero in this slot does, or None when it cannot make Inf or NaN."""
    node = slot.node
    if slot.is_attribute and node.op_type == "BatchNormalization":
        # Its variance is a constant: converters fold variance + eps in float32 before storing anything,
        # so only a channel whose variance is itself (nearly) zero depends on the epsilon.
        variance = ctx.constant(node.input[4]) if len(node.input) > 4 else None
        if variance is None or not (np.abs(variance) < FP16_TINY).any():
            return None
        return "a channel of zero variance divides by 0 wherever BatchNorm is not folded before storage"
    if slot.is_attribute:
        return "Rsqrt(variance + 0) is Inf on a zero-variance row, NaN after the multiply"
    if zero_sensitive(node, slot.index):
        return f"{node.op_type} of 0 is Inf or NaN"
    allowed = GUARD_OPS.get(node.op_type, ())
    if allowed is not None and slot.index not in allowed:
        return None
    guarded = [n for n, i in readers(users, node.output[0]) if zero_sensitive(n, i)]
    if not guarded:
        return None
    return f"{guarded[0].op_type} ('{guarded[0].name}') of {node.op_type}(x, 0) is Inf or NaN where x is 0"


def _finding(ctx: LintContext, slot: Slot, small: np.ndarray, consequence: str) -> Finding:
    node, values = slot.node, slot.values.astype(np.float64).reshape(-1)
    module, how = module_of(ctx, node)
    flagged = values[small.reshape(-1)]
    worst = float(flagged[np.argmin(np.abs(flagged))])
    stored = float(as_stored(np.asarray(worst)))
    zeroed = bool((np.abs(flagged) < FP16_ZERO_BELOW).any())
    what = "eps" if slot.is_attribute else f"constant {slot.describe()}"
    count = f" ({flagged.size} of {values.size} values)" if values.size > 1 else ""
    if zeroed:
        message = (f"{node.op_type}{in_module(module)} {what} {fmt(worst)}{count} is stored as 0 in float16: "
                   f"{consequence}; {CURE}")
    else:
        message = (f"{node.op_type}{in_module(module)} {what} {fmt(worst)}{count} is stored as the float16 subnormal "
                   f"{stored:.4g}: still above 0, so no Inf, but held with fewer bits; {CURE} if it matters")
    return Finding(NAME, "warning" if zeroed else "info", node.name, node.op_type, module,
                   f">= {FP16_TINY:.4g}", f"{fmt(worst)} -> {stored:.4g}", message, how)
