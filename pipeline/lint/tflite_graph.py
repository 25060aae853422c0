"""A read-only view of a .tflite file's main graph, for the TFLite-side lint rules: its ops in order and
its float constants, read from the flatbuffer with LiteRT's schema (no interpreter, no TensorFlow).

A buffer is inline (`data`) or, in files over 2 GB, at `offset`/`size` from the start of the file.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

FLOAT_TYPES = {0: np.float32, 1: np.float16}  # schema TensorType FLOAT32, FLOAT16


@dataclass(frozen=True)
class TFLiteOp:
    index: int
    op: str  # builtin name (ADD, RSQRT, DEQUANTIZE, ...) or the custom op's name
    inputs: tuple[int, ...]  # tensor indices; -1 for an omitted optional input
    outputs: tuple[int, ...]


class TFLiteGraph:
    def __init__(self, ops: list[TFLiteOp], constants: dict[int, np.ndarray], names: dict[int, str]) -> None:
        self.ops = ops
        self.constants = constants  # tensor index -> float values, as stored (float16 stays float16)
        self.names = names

    @classmethod
    def read(cls, path: Path) -> "TFLiteGraph":
        from ai_edge_litert import schema_py_generated as schema

        data = path.read_bytes()
        model = schema.Model.GetRootAs(data, 0)
        graph = model.Subgraphs(0)
        builtin = {code: name for name, code in vars(schema.BuiltinOperator).items() if not name.startswith("_")}
        ops = []
        for i in range(graph.OperatorsLength()):
            op = graph.Operators(i)
            code = model.OperatorCodes(op.OpcodeIndex())
            name = builtin.get(max(code.BuiltinCode(), code.DeprecatedBuiltinCode()), "UNKNOWN")
            if name == "CUSTOM":
                name = (code.CustomCode() or b"").decode()
            ops.append(TFLiteOp(i, name, tuple(int(t) for t in op.InputsAsNumpy()) if op.InputsLength() else (),
                                tuple(int(t) for t in op.OutputsAsNumpy()) if op.OutputsLength() else ()))
        constants, names = {}, {}
        for i in range(graph.TensorsLength()):
            tensor = graph.Tensors(i)
            names[i] = (tensor.Name() or b"").decode(errors="replace")
            raw = _buffer(data, model.Buffers(tensor.Buffer())) if tensor.Type() in FLOAT_TYPES else None
            if raw:
                constants[i] = np.frombuffer(raw, dtype=FLOAT_TYPES[tensor.Type()])
        return cls(ops, constants, names)

    def readers(self, tensor: int) -> list[tuple[TFLiteOp, int]]:
        """The ops that read `tensor`, with the input position."""
        return [(op, position) for op in self.ops for position, t in enumerate(op.inputs) if t == tensor]

    def constant_of(self, tensor: int) -> tuple[np.ndarray, int] | None:
        """The stored constant behind `tensor` (looking through a DEQUANTIZE), and that constant's tensor index."""
        if tensor in self.constants:
            return self.constants[tensor], tensor
        producer = next((op for op in self.ops if tensor in op.outputs), None)
        if producer is not None and producer.op == "DEQUANTIZE" and producer.inputs[0] in self.constants:
            return self.constants[producer.inputs[0]], producer.inputs[0]
        return None

    def compute_ops(self) -> list[TFLiteOp]:
        """The ops other than DEQUANTIZE: the same sequence in a float32 file and its float16 twin."""
        return [op for op in self.ops if op.op != "DEQUANTIZE"]


def _buffer(data: bytes, buffer) -> bytes | None:
    if buffer.DataLength():
        return buffer.DataAsNumpy().tobytes()
    offset, size = buffer.Offset(), buffer.Size()
    return data[offset:offset + size] if offset > 1 and size else None
