"""TFLite side: what float16 did to the constants of the converted model_float16.tflite.

Read from the flatbuffer (pipeline/lint/tflite_graph.py). The fp16 file is the float32 file's graph with
each float constant stored as float16 behind a DEQUANTIZE, so with both files their compute ops align one
to one, and each stored constant is compared with its float32 value:
- warning: a constant stored as 0 where the float32 file holds a nonzero value, added (ADD) or taken as a
  floor (MAXIMUM) right before RSQRT, SQRT, LOG, POW or a DIV's denominator, or a DIV's denominator
  itself: an epsilon float16 flushed to zero (Inf on a zero-variance row, NaN after the multiply). Without
  a float32 file to compare with, an all-zeros constant in that place is reported: nothing else adds 0;
- info: a constant clamped to +-65504 where the float32 file holds more (a mask: -65504 still masks).
The file's ops carry no ONNX node names: the ONNX-side fp16_underflow/fp16_overflow findings name the
node and module.
"""
from __future__ import annotations

from typing import Iterator

import numpy as np

from pipeline.lint import Finding, rule
from pipeline.lint.context import LintContext
from pipeline.lint.fp16 import FP16_MAX
from pipeline.lint.tflite_fp16 import aligned, flushed, guarded, twin_value
from pipeline.lint.tflite_graph import TFLiteGraph, TFLiteOp

NAME = "tflite_fp16_constants"
ATTRIBUTION = "TFLite ops carry no ONNX node name; the ONNX-side fp16_* findings name the node and module"


@rule(NAME, phase="tf")
def check(ctx: LintContext) -> Iterator[Finding]:
    fp16 = ctx.tflite_graph("fp16")
    if fp16 is None:
        return
    yield from findings(fp16, ctx.tflite_graph("fp32"), ctx.tflite["fp16"].name)


def findings(fp16: TFLiteGraph, fp32: TFLiteGraph | None, file: str) -> Iterator[Finding]:
    """The findings on an fp16 file's graph, compared with its float32 twin's when there is one."""
    twin = aligned(fp16, fp32)
    for op in fp16.compute_ops():
        for position, tensor in enumerate(op.inputs):
            stored = fp16.constant_of(tensor)
            if stored is None or stored[0].dtype != np.float16:
                continue
            original = twin_value(fp32, twin.get(op.index), position)
            yield from _flushed(fp16, op, position, stored[0], original, file)
            yield from _clamped(op, position, stored[0], original, file)


def _flushed(graph: TFLiteGraph, op: TFLiteOp, position: int, stored: np.ndarray, original: np.ndarray | None,
             file: str) -> Iterator[Finding]:
    zero = flushed(stored, original)
    known = original is not None and original.size == stored.size
    if known:
        was = f" ({float(original[zero][0]):.3g} in the float32 file)" if zero.any() else ""
    else:
        was = " (an all-zeros constant: nothing but a flushed epsilon is added there)"
    at = guarded(graph, op, position) if zero.any() else None
    if at is None:
        return
    where = "itself" if at is op else f"before {at.op} (op {at.index})"
    yield Finding(NAME, "warning", f"{file} op {op.index}", op.op, None, "> 0", f"0{was}",
                  f"{file}: {op.op} (op {op.index}) input {position} is stored as 0{was}, {where}: Inf on a "
                  f"zero-variance row or zero input, NaN after the multiply; the fp16 cure (fp16_cure.json) or a "
                  f"float32 constant avoids it", ATTRIBUTION)


def _clamped(op: TFLiteOp, position: int, stored: np.ndarray, original: np.ndarray | None, file: str) -> Iterator[Finding]:
    if original is None or original.size != stored.size:
        return
    beyond = np.abs(original.astype(np.float64)) > FP16_MAX
    if not beyond.any():
        return
    value = float(original[beyond][np.argmax(np.abs(original[beyond]))])
    yield Finding(NAME, "info", f"{file} op {op.index}", op.op, None, f"{value:.4g}", f"{np.sign(value) * FP16_MAX:g}",
                  f"{file}: {op.op} (op {op.index}) input {position} holds {np.sign(value) * FP16_MAX:g} where the float32 "
                  f"file holds {value:.4g} ({int(beyond.sum())} value(s) clamped to float16's range); as a mask it still "
                  f"masks, as a scale it is smaller (see the fp16_overflow finding)", ATTRIBUTION)
