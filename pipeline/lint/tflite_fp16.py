"""What float16 did to a TFLite file's constants, read against its float32 twin: shared by the TFLite-side
lint rule (rules/tflite_fp16_constants.py) and the fp16 cure that mends it (pipeline/convert/fp16_patch.py).

An fp16 file is its float32 file's graph with each float constant stored as float16 behind a DEQUANTIZE, so
their compute ops align one to one. A guard (ADD, MAXIMUM) whose constant float16 flushed to 0 right before a
zero-sensitive op (RSQRT, SQRT, LOG, POW, a DIV's denominator) is an epsilon lost: Inf on a zero-variance row.
"""
from __future__ import annotations

import numpy as np

from pipeline.lint.tflite_graph import TFLiteGraph, TFLiteOp

GUARDS = ("ADD", "MAXIMUM")
ZERO_SENSITIVE = {"RSQRT": 0, "SQRT": 0, "LOG": 0, "POW": 0, "DIV": 1}  # op -> the input that must not be 0


def aligned(fp16: TFLiteGraph, fp32: TFLiteGraph | None) -> dict[int, TFLiteOp]:
    """fp16 op index -> the float32 file's op in the same place, when both files have the same compute ops."""
    if fp32 is None:
        return {}
    ours, theirs = fp16.compute_ops(), fp32.compute_ops()
    if [o.op for o in ours] != [o.op for o in theirs]:
        return {}
    return {a.index: b for a, b in zip(ours, theirs)}


def twin_value(fp32: TFLiteGraph | None, op: TFLiteOp | None, position: int) -> np.ndarray | None:
    if fp32 is None or op is None or position >= len(op.inputs):
        return None
    found = fp32.constant_of(op.inputs[position])
    return found[0] if found is not None else None


def guarded(graph: TFLiteGraph, op: TFLiteOp, position: int) -> TFLiteOp | None:
    """The op that a zero in this input would make Inf or NaN, if any."""
    if ZERO_SENSITIVE.get(op.op) == position:
        return op
    if op.op not in GUARDS or not op.outputs:
        return None
    return next((reader for reader, at in graph.readers(op.outputs[0]) if ZERO_SENSITIVE.get(reader.op) == at), None)


def flushed(stored: np.ndarray, original: np.ndarray | None) -> np.ndarray:
    """Which stored float16 values float16 flushed to 0: 0 where the float32 file holds a nonzero value or,
    without the float32 value, every value of an all-zeros constant (nothing but a flushed epsilon adds 0)."""
    zero = stored == 0
    if original is not None and original.size == stored.size:
        return zero & (original.astype(np.float64) != 0)  # flushed by float16, not the model's own 0
    return zero if zero.all() else np.zeros_like(zero)
