"""The fp16 cure without a second conversion: each epsilon float16 flushed to 0 in model_float16.tflite is
raised to float16's smallest normal value in the file itself.

The constants are the ones the TFLite-side lint warns about (pipeline/lint/rules/tflite_fp16_constants.py): a
float16 constant stored as 0 where the float32 file holds a nonzero value (or, without the float32 value, an
all-zeros constant), added (ADD) or taken as a floor (MAXIMUM) right before RSQRT, SQRT, LOG, POW or a DIV's
denominator. The value written is the ONNX-side cure's (fp16_cure.py): 6.1035e-05 with the float32 value's
sign, so both cures make the same numbers. Only the guards' reading changes: a constant that something else
reads too (TensorFlow's converter stores BERT's 1e-12 and an attention mask's 0 as one float16 zero) is copied
for the guards, as the ONNX-side cure copies a shared initializer. A DIV's own constant denominator is a
scale, never cured.

The file is rewritten with LiteRT's flatbuffer object API (as TensorFlow's lite/tools/flatbuffer_utils.py
does). A file whose buffers sit outside the flatbuffer (over 2 GB) is not patched: the ONNX route converts
again.
"""
from __future__ import annotations

import copy as copy_module
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from pipeline.lint.fp16 import FP16_TINY
from pipeline.lint.rules.tflite_fp16_constants import GUARDS, aligned, flushed, guarded, twin_value
from pipeline.lint.tflite_graph import TFLiteGraph, TFLiteOp


@dataclass(frozen=True)
class Patch:
    """One constant of the fp16 file rewritten in place."""

    tensor: str  # the constant's tensor name in the fp16 file
    readers: tuple[str, ...]  # "ADD (op 32) before RSQRT (op 34)", one per guard that reads it
    old: float  # the float32 file's value (0.0 when the float32 file could not be aligned)
    new: float
    values: int  # how many values changed

    def describe(self) -> str:
        was = f"{self.old:.3g} in the float32 file" if self.old else "no aligned float32 value"
        return f"{self.tensor} ({', '.join(self.readers)}): 0 ({was}) -> {self.new:.4g}"


@dataclass(frozen=True)
class Patched:
    patches: list[Patch]  # what changed in the written file (none: nothing was written)
    left: int  # flushed epsilons found but not patched (their value would reach another op, or a file over 2 GB)


def patch_flushed(fp16: Path, fp32: Path | None, out: Path) -> Patched:
    """Write `out`, a copy of `fp16` with each flushed epsilon raised for its guards; says what changed and
    how many flushed epsilons were left as they are."""
    graph = TFLiteGraph.read(fp16)
    twin_graph = TFLiteGraph.read(fp32) if fp32 is not None and fp32.exists() else None
    twin = aligned(graph, twin_graph)
    edits: dict[int, _Edit] = {}
    left = 0
    for op in graph.compute_ops():
        for position, tensor in enumerate(op.inputs if op.op in GUARDS else ()):
            found = graph.constant_of(tensor)
            if found is None or found[0].dtype != np.float16:
                continue
            stored, constant = found
            original = twin_value(twin_graph, twin.get(op.index), position)
            original = original.reshape(stored.shape) if original is not None and original.size == stored.size else None
            mask, at = flushed(stored, original), guarded(graph, op, position)
            if not mask.any() or at is None:
                continue
            entry = _entry(graph, op, position, constant)
            if entry is None:
                left += 1
                continue
            edit = edits.setdefault(constant, _Edit.of(stored, mask, original))
            edit.entries.add(entry)
            edit.readers.append(f"{op.op} (op {op.index}) before {at.op} (op {at.index})")
    if not edits or not _rewrite(fp16, graph, edits, out):
        return Patched([], left + sum(len(e.readers) for e in edits.values()))
    return Patched([Patch(graph.names[c], tuple(e.readers), e.old, FP16_TINY, int(e.mask.sum()))
                    for c, e in edits.items()], left)


@dataclass
class _Edit:
    values: np.ndarray
    mask: np.ndarray
    old: float
    entries: set[tuple[int, int]] = field(default_factory=set)  # (op, input position) to point at the cured values
    readers: list[str] = field(default_factory=list)

    @classmethod
    def of(cls, stored: np.ndarray, mask: np.ndarray, original: np.ndarray | None) -> "_Edit":
        sign = np.sign(original) if original is not None else 1.0  # an all-zeros epsilon without its value: positive
        old = float(np.abs(original[mask]).min()) if original is not None else 0.0
        return cls(np.where(mask, sign * FP16_TINY, stored).astype(np.float16), mask, old)


def _entry(graph: TFLiteGraph, op: TFLiteOp, position: int, constant: int) -> tuple[int, int] | None:
    """Where the guard's reading of the constant starts: the guard's own input, or the input of the DEQUANTIZE
    it reads through when only guards read that DEQUANTIZE. None when the cured value would reach another op."""
    if op.inputs[position] == constant:
        return op.index, position
    producer = next((p for p in graph.ops if op.inputs[position] in p.outputs), None)
    if producer is None or producer.op != "DEQUANTIZE":
        return None
    readers = graph.readers(producer.outputs[0])
    if not all(r.op in GUARDS and guarded(graph, r, at) is not None for r, at in readers):
        return None
    return producer.index, 0


def _rewrite(source: Path, graph: TFLiteGraph, edits: dict[int, _Edit], out: Path) -> bool:
    """Write the cured file: a constant read only at its entries (and with a buffer of its own) gets the new
    values; any other gets a cured copy (a new buffer and tensor) that its entries read instead."""
    import flatbuffers
    from ai_edge_litert import schema_py_generated as schema

    model = schema.ModelT.InitFromPackedBuf(source.read_bytes(), 0)
    if any(buffer.offset > 1 for buffer in model.buffers or []):
        return False  # buffers outside the flatbuffer: the object API cannot write them
    subgraph = model.subgraphs[0]
    for constant, edit in edits.items():
        data = np.frombuffer(edit.values.tobytes(), np.uint8)
        readers = {(op.index, at) for op, at in graph.readers(constant)}
        if readers == edit.entries and constant not in graph.shared:
            model.buffers[subgraph.tensors[constant].buffer].data = data
            continue
        copy = copy_module.copy(subgraph.tensors[constant])
        model.buffers.append(schema.BufferT())
        model.buffers[-1].data = data
        copy.buffer, copy.name = len(model.buffers) - 1, (graph.names[constant] + "__fp16_cured").encode()
        subgraph.tensors.append(copy)
        for op, at in edit.entries:
            inputs = np.array(subgraph.operators[op].inputs)  # unpacked read-only
            inputs[at] = len(subgraph.tensors) - 1
            subgraph.operators[op].inputs = inputs
    builder = flatbuffers.Builder(1024)
    builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
    out.write_bytes(builder.Output())
    return True
