"""A read-only view of a converted SavedModel's graph, for the TF-side lint rules.

onnx2tf's SavedModel serves one function; its weights arrive as captured constants.
The view lists that function's ops and resolves an op input to its constant value
(a captured tensor or a Const op) where it has one.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

CALL_OPS = ("StatefulPartitionedCall", "PartitionedCall")


@dataclass(frozen=True)
class TFOp:
    name: str
    op: str
    inputs: tuple[str, ...]  # producer op names or function argument names
    attrs: dict  # plain Python values (str, float, int, bool, lists), not TF protos: no TensorFlow needed to read them


def _plain(attr):
    """A TF AttrValue as a Python value: the graph view then pickles without TensorFlow (it is read
    in the TF worker and used in the parent, which has not imported TensorFlow)."""
    kind = attr.WhichOneof("value")
    if kind == "s":
        return attr.s.decode(errors="replace")
    if kind in ("f", "i", "b", "type"):
        return getattr(attr, kind)
    if kind == "list":
        return [*attr.list.s, *attr.list.i, *attr.list.f, *attr.list.b] or None
    return None  # tensors (read into values), shapes, functions: not used by the rules


def _strip(tensor: str) -> str:
    return tensor.lstrip("^").split(":")[0]


class TFGraph:
    def __init__(self, ops: list[TFOp], values: dict[str, np.ndarray]) -> None:
        self.ops = ops
        self._values = values
        self._by_name = {op.name: op for op in ops}

    @classmethod
    def from_saved_model(cls, path: Path) -> "TFGraph":
        import tensorflow as tf
        from tensorflow.python.framework import tensor_util

        function = tf.saved_model.load(str(path)).signatures["serving_default"]
        graph_def = function.graph.as_graph_def()
        captured = {internal.name.split(":")[0]: external for external, internal in function.graph.captures}
        call = next(node for node in graph_def.node if node.op in CALL_OPS)
        body = next(f for f in graph_def.library.function if f.signature.name == call.attr["f"].func.name)
        values = {}
        for arg, outer in zip(body.signature.input_arg, call.input):
            external = captured.get(_strip(outer))
            if external is not None and hasattr(external, "numpy") and external.dtype != tf.resource:
                values[arg.name] = external.numpy()
        ops = []
        for node in body.node_def:
            attrs = {key: _plain(node.attr[key]) for key in node.attr}
            if node.op == "Const":
                values[node.name] = tensor_util.MakeNdarray(node.attr["value"].tensor)
            ops.append(TFOp(node.name, node.op, tuple(_strip(i) for i in node.input), attrs))
        return cls(ops, values)

    def value(self, name: str) -> np.ndarray | None:
        """The constant behind an op input, looking through Identity ops."""
        seen = 0
        while name not in self._values and name in self._by_name and self._by_name[name].op == "Identity" and seen < 8:
            name, seen = self._by_name[name].inputs[0], seen + 1
        return self._values.get(name)

    def producer(self, name: str) -> TFOp | None:
        return self._by_name.get(name)

    def of_type(self, *op_types: str) -> list[TFOp]:
        return [op for op in self.ops if op.op in op_types]
