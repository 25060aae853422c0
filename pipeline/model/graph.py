"""Graph facts every stage shares: node outputs in graph order, and static shapes."""
from __future__ import annotations

from dataclasses import dataclass

import onnx


@dataclass(frozen=True)
class TensorOrder:
    """Node outputs in topological (graph) order, with the node that makes each."""

    tensors: list[str]
    producer: dict[str, onnx.NodeProto]
    graph_inputs: set[str]

    @classmethod
    def of(cls, model: onnx.ModelProto) -> "TensorOrder":
        tensors, producer = [], {}
        for node in model.graph.node:
            for out in node.output:
                if out:
                    tensors.append(out)
                    producer[out] = node
        sources = {v.name for v in model.graph.input} | {i.name for i in model.graph.initializer}
        return cls(tensors, producer, sources)


def static_shapes(model: onnx.ModelProto) -> dict[str, list[int]]:
    """Static shapes of every value that shape inference can tell (dynamic dims as -1)."""
    inferred = onnx.shape_inference.infer_shapes(model)
    values = list(inferred.graph.value_info) + list(inferred.graph.input) + list(inferred.graph.output)
    return {v.name: [d.dim_value if d.HasField("dim_value") else -1 for d in v.type.tensor_type.shape.dim] for v in values}
