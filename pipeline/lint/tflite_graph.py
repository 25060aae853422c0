"""A read-only view of a .tflite file's main graph, for the TFLite-side lint rules: its ops in order and
its float constants, read from the flatbuffer with LiteRT's schema (no interpreter, no TensorFlow).

A buffer is inline (`data`) or, in files over 2 GB, at `offset`/`size` from the start of the file. Each
float constant's bytes are located in the file (`spans`), so the fp16 cure can rewrite one in place
(pipeline/convert/fp16_patch.py).
"""
from __future__ import annotations

from collections import Counter
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
    def __init__(self, ops: list[TFLiteOp], constants: dict[int, np.ndarray], names: dict[int, str],
                 spans: dict[int, tuple[int, int]] | None = None, shared: frozenset[int] = frozenset(),
                 subgraphs: int = 1) -> None:
        self.ops = ops
        self.constants = constants  # tensor index -> float values, as stored (float16 stays float16)
        self.names = names
        self.spans = spans or {}  # constant tensor index -> (first byte, byte count) of its values in the file
        self.shared = shared  # constant tensors whose buffer another tensor (of any subgraph) also uses
        self.subgraphs = subgraphs  # how many the file has (the ops and tensors here are the main one's)

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
        constants, names, spans = {}, {}, {}
        for i in range(graph.TensorsLength()):
            tensor = graph.Tensors(i)
            names[i] = (tensor.Name() or b"").decode(errors="replace")
            span = _span(model.Buffers(tensor.Buffer())) if tensor.Type() in FLOAT_TYPES else None
            if span:
                spans[i] = span
                constants[i] = np.frombuffer(data[span[0]:span[0] + span[1]], dtype=FLOAT_TYPES[tensor.Type()])
        users = Counter(model.Subgraphs(s).Tensors(i).Buffer() for s in range(model.SubgraphsLength())
                        for i in range(model.Subgraphs(s).TensorsLength()))
        shared = frozenset(i for i in spans if users[graph.Tensors(i).Buffer()] > 1)
        return cls(ops, constants, names, spans, shared, model.SubgraphsLength())

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


def _span(buffer) -> tuple[int, int] | None:
    """Where a buffer's bytes sit in the file: inline (the `data` vector's first byte), or at offset/size."""
    if buffer.DataLength():
        return buffer._tab.Vector(buffer._tab.Offset(4)), buffer.DataLength()  # field 4 is `data` (schema.fbs)
    offset, size = buffer.Offset(), buffer.Size()
    return (offset, size) if offset > 1 and size else None
