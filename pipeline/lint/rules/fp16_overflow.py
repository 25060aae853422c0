"""Constants beyond float16's range (|x| > 65504): finfo(float32).min or -1e9 attention masks, large scales.

TensorFlow's TFLite converter clamps them to +-65504 when it stores float16 (measured, TF 2.21); a plain
float16 cast (numpy, PyTorch's .half(), ONNX float16 conversion) makes them +-inf instead.
- info: a mask (the value reaches a Softmax or a ReduceMax) or a bound (Clip, Max, Min): -65504 still
  masks and still bounds, but as -inf a fully masked row gives Softmax NaN, and inf * 0 is NaN;
- warning: any other use (a scale factor, an offset): clamping changes the value the model computes
  with, by the factor the message gives.
"""
from __future__ import annotations

from typing import Iterator

import numpy as np

from pipeline.lint import Finding, rule
from pipeline.lint.context import LintContext
from pipeline.lint.fp16 import FP16_MAX, Slot, consumers, fmt, in_module, module_of, overflows, slots

NAME = "fp16_overflow"
BOUND_OPS = ("Clip", "Max", "Min")
MASK_SINKS = ("Softmax", "LogSoftmax", "ReduceMax", "ArgMax", "TopK")
MASK_DEPTH = 4  # (1 - mask) * min -> Add -> Reshape -> Softmax: a few ops at most


@rule(NAME)
def check(ctx: LintContext) -> Iterator[Finding]:
    users = consumers(ctx)
    for slot in slots(ctx):
        big = overflows(slot.values)
        if big.any():
            yield _finding(ctx, users, slot, big)


def _reaches(users: dict, tensor: str, sinks: tuple[str, ...], depth: int) -> str | None:
    """The first node of `sinks` type that reads `tensor` within `depth` ops, or None."""
    frontier = [tensor]
    for _ in range(depth):
        following = []
        for name in frontier:
            for node, _index in users.get(name, []):
                if node.op_type in sinks:
                    return node.name
                following += list(node.output)
        frontier = following
    return None


def _finding(ctx: LintContext, users: dict, slot: Slot, big: np.ndarray) -> Finding:
    node, values = slot.node, slot.values.astype(np.float64).reshape(-1)
    module, how = module_of(ctx, node)
    flagged = values[big.reshape(-1)]
    worst = float(flagged[np.argmax(np.abs(flagged))])
    clamped = float(np.sign(worst) * FP16_MAX)
    count = f" ({flagged.size} of {values.size} values)" if values.size > 1 else ""
    head = f"{node.op_type}{in_module(module)} constant {slot.describe()} {fmt(worst)}{count} is beyond float16's range"
    sink = _reaches(users, node.output[0], MASK_SINKS, MASK_DEPTH) if node.output else None
    if node.op_type in BOUND_OPS or sink is not None:
        use = f"a mask before '{sink}'" if sink else f"a {node.op_type} bound"
        message = (f"{head}: as {use}, TFLite's converter stores {clamped:g}, which still masks; a float16 cast "
                   f"makes it {'-' if worst < 0 else ''}inf, and then a fully masked Softmax row or inf * 0 is NaN; "
                   f"clamp it to +-65504 (or use -1e4) in the model")
        severity = "info"
    else:
        message = (f"{head}: TFLite's converter stores it as {clamped:g}, {abs(worst) / FP16_MAX:.3g}x smaller, and a "
                   f"float16 cast as inf (inf * 0 and inf - inf are NaN); rescale it or keep this constant in float32")
        severity = "warning"
    return Finding(NAME, severity, node.name, node.op_type, module, f"|x| <= {FP16_MAX:g}", f"{fmt(worst)} -> {clamped:g}",
                   message, how)
