"""The fp16 cure without a second conversion: each epsilon float16 flushed to 0 in model_float16.tflite is
raised to float16's smallest normal value in the file itself.

The constants are the ones the TFLite-side lint warns about (pipeline/lint/tflite_fp16.py's reading): a
float16 constant stored as 0 where the float32 file holds a nonzero value, added (ADD) or taken as a floor
(MAXIMUM) right before RSQRT, SQRT, LOG, POW or a DIV's denominator. Without the float32 value (no float32
file, or one whose ops do not align) only an all-zeros ADD constant counts: nothing but a flushed epsilon adds
0, while a floor of 0 is often the model's own. The value written is the ONNX-side cure's (fp16_cure.py):
6.1035e-05 with the float32 value's sign, so both cures make the same numbers. Only the guards' reading
changes: a constant that something else reads too (TensorFlow's converter stores BERT's 1e-12 and an attention
mask's 0 as one float16 zero) is copied for the guards, as the ONNX-side cure copies a shared initializer; a
DEQUANTIZE whose readers would need different values is left alone. A DIV's own constant denominator is a
scale, never cured.

A constant read by nothing else is rewritten in its own bytes (every other byte of the file stays); a copy
needs new tensors, so the file is then written again with LiteRT's flatbuffer object API (as TensorFlow's
lite/tools/flatbuffer_utils.py does). What cannot be done here is counted in `left`, and the ONNX route
converts again: a file with more than one subgraph (control flow) or buffers outside the flatbuffer (over
2 GB).
"""
from __future__ import annotations

import copy as copy_module
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from pipeline.lint.fp16 import FP16_TINY
from pipeline.lint.tflite_fp16 import GUARDS, aligned, flushed, guarded, twin_value
from pipeline.lint.tflite_graph import TFLiteGraph, TFLiteOp


@dataclass(frozen=True)
class Patch:
    """One constant of the fp16 file raised for its guards."""

    tensor: str  # the constant's tensor name in the fp16 file
    readers: tuple[str, ...]  # "ADD (op 32) before RSQRT (op 34)", one per guard that reads it
    old: float  # the float32 file's value, signed (0.0 when the float32 file could not be aligned)
    new: float  # the value written, signed
    values: int  # how many values changed
    copied: bool  # a cured copy for the guards (another op reads the constant too)

    def describe(self) -> str:
        was = f"{self.old:.3g} in the float32 file" if self.old else "no aligned float32 value"
        copy = ", a copy for these readers" if self.copied else ""
        return f"`{self.tensor}` read by {', '.join(self.readers)}: 0 ({was}) -> {self.new:.4g}{copy}"


@dataclass(frozen=True)
class Patched:
    patches: list[Patch]  # what changed in the written file (none: nothing was written)
    left: int  # flushed epsilons found but not patched (their value would reach another op; control flow; > 2 GB)
    aligned: bool  # whether the float32 file's ops aligned with this file's (the flushed values were known)


def patch_flushed(fp16: Path, fp32: Path | None, out: Path) -> Patched:
    """Write `out`, a copy of `fp16` with each flushed epsilon raised for its guards; says what changed and
    how many flushed epsilons were left as they are."""
    graph = TFLiteGraph.read(fp16)
    twin_graph = TFLiteGraph.read(fp32) if fp32 is not None and fp32.exists() else None
    twin = aligned(graph, twin_graph)
    if graph.subgraphs > 1:
        return Patched([], 1, bool(twin))  # guards inside control-flow bodies are not read here
    edits: dict[tuple[int, bytes], _Edit] = {}  # (constant, its cured values) -> the guards that read them
    left = 0
    for op in graph.compute_ops():
        for position in range(len(op.inputs) if op.op in GUARDS else 0):
            found = _flushed_guard(graph, twin_graph, twin, op, position)
            if found is None:
                continue
            entry = _entry(graph, twin_graph, twin, op, position)
            if entry is None:
                left += 1
                continue
            edit = edits.setdefault((found.constant, found.cured.tobytes()), _Edit(found.cured, found.mask, found.original))
            edit.entries.add(entry)
            edit.readers.append(f"{op.op} (op {op.index}) before {found.at.op} (op {found.at.index})")
    if not edits:
        return Patched([], left, bool(twin))
    copied = _copies(graph, edits)
    if not _write(fp16, graph, edits, copied, out):
        return Patched([], left + sum(len(e.readers) for e in edits.values()), bool(twin))
    return Patched([e.patch(graph.names[c], (c, v) in copied) for (c, v), e in edits.items()], left, bool(twin))


@dataclass
class _Edit:
    values: np.ndarray  # the constant's cured float16 values
    mask: np.ndarray  # which of them were flushed (and are raised)
    original: np.ndarray | None  # its float32 values, when known
    entries: set[tuple[int, int]] = field(default_factory=set)  # (op, input position) to point at the cured values
    readers: list[str] = field(default_factory=list)

    def patch(self, tensor: str, copied: bool) -> Patch:
        first = int(np.flatnonzero(self.mask.ravel())[0])
        old = float(self.original.ravel()[first]) if self.original is not None else 0.0
        return Patch(tensor, tuple(self.readers), old, float(self.values.ravel()[first]), int(self.mask.sum()), copied)


@dataclass(frozen=True)
class _Flushed:
    constant: int  # the stored float16 constant's tensor
    cured: np.ndarray  # its values with the flushed ones raised
    mask: np.ndarray  # which were flushed
    original: np.ndarray | None  # its float32 values, when known
    at: TFLiteOp  # the op a 0 there makes Inf or NaN


def _flushed_guard(graph: TFLiteGraph, twin_graph: TFLiteGraph | None, twin: dict, op: TFLiteOp,
                   position: int) -> _Flushed | None:
    """What this guard input holds when it is a flushed epsilon; None otherwise."""
    found = graph.constant_of(op.inputs[position])
    if found is None or found[0].dtype != np.float16:
        return None
    stored, constant = found
    original = twin_value(twin_graph, twin.get(op.index), position)
    original = original.reshape(stored.shape) if original is not None and original.size == stored.size else None
    if original is None and op.op != "ADD":
        return None  # an all-zeros floor without its float32 value may be the model's own 0
    mask, at = flushed(stored, original), guarded(graph, op, position)
    if not mask.any() or at is None:
        return None
    sign = np.sign(original) if original is not None else 1.0  # an all-zeros epsilon without its value: positive
    return _Flushed(constant, np.where(mask, sign * FP16_TINY, stored).astype(np.float16), mask, original, at)


def _entry(graph: TFLiteGraph, twin_graph: TFLiteGraph | None, twin: dict, op: TFLiteOp,
           position: int) -> tuple[int, int] | None:
    """Where the guard's reading of the constant starts: the guard's own input, or the input of the DEQUANTIZE
    it reads through when every reader of that DEQUANTIZE is a guard wanting the same cured values. None when
    the cured value would reach another op."""
    tensor = op.inputs[position]
    if tensor in graph.constants:
        return op.index, position
    producer = next((p for p in graph.ops if tensor in p.outputs), None)
    if producer is None or producer.op != "DEQUANTIZE":
        return None
    wanted = {None if (f := _flushed_guard(graph, twin_graph, twin, reader, at)) is None else f.cured.tobytes()
              for reader, at in graph.readers(tensor)}
    return (producer.index, 0) if len(wanted) == 1 and None not in wanted else None


def _copies(graph: TFLiteGraph, edits: dict[tuple[int, bytes], _Edit]) -> set[tuple[int, bytes]]:
    """The edits that need a copy of their constant: it has other readers, another edit, or a shared buffer."""
    per_constant: dict[int, int] = {}
    for constant, _ in edits:
        per_constant[constant] = per_constant.get(constant, 0) + 1
    copied = set()
    for (constant, values), edit in edits.items():
        readers = {(reader.index, at) for reader, at in graph.readers(constant)}
        if readers != edit.entries or per_constant[constant] > 1 or constant in graph.shared:
            copied.add((constant, values))
    return copied


def _write(source: Path, graph: TFLiteGraph, edits: dict[tuple[int, bytes], _Edit], copied: set, out: Path) -> bool:
    """Write the cured file: each constant read only at its entries gets its new values in its own bytes; when
    some need a copy (a new buffer and tensor that their entries read instead), the whole file is packed again.
    False when the file's buffers sit outside the flatbuffer (over 2 GB)."""
    if not copied:
        data = bytearray(source.read_bytes())
        for (constant, _), edit in edits.items():
            start, length = graph.spans[constant]
            data[start:start + length] = edit.values.tobytes()
        out.write_bytes(bytes(data))
        return True
    return _repacked(source, graph, edits, copied, out)


def _repacked(source: Path, graph: TFLiteGraph, edits: dict[tuple[int, bytes], _Edit], copied: set, out: Path) -> bool:
    import flatbuffers
    from ai_edge_litert import schema_py_generated as schema

    model = schema.ModelT.InitFromPackedBuf(source.read_bytes(), 0)
    if any(buffer.offset > 1 for buffer in model.buffers or []):
        return False  # buffers outside the flatbuffer: the object API cannot write them
    subgraph = model.subgraphs[0]
    for (constant, values), edit in edits.items():
        data = np.frombuffer(edit.values.tobytes(), np.uint8)
        if (constant, values) not in copied:
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
