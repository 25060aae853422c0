"""Tiny onnx.helper graphs for the fp16_* rule tests."""
from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from pipeline.lint.context import LintContext


def graph(nodes: list[onnx.NodeProto], constants: dict[str, np.ndarray], output: str = "y") -> LintContext:
    """A float32 [1, 4] input x, the given nodes and initializers, output `output`; no PyTorch model."""
    inits = [numpy_helper.from_array(np.asarray(v, dtype=np.float32), name) for name, v in constants.items()]
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])
    y = helper.make_tensor_value_info(output, TensorProto.FLOAT, None)
    model = helper.make_model(helper.make_graph(nodes, "g", [x], [y], inits), opset_imports=[helper.make_opsetid("", 18)])
    return LintContext(model)


def layer_norm(eps: float) -> LintContext:
    node = helper.make_node("LayerNormalization", ["x", "scale", "bias"], ["y"], name="ln", epsilon=eps)
    return graph([node], {"scale": np.ones(4), "bias": np.zeros(4)})


def rms_norm(eps: np.ndarray, constant_node: bool = False) -> LintContext:
    """y = x / Sqrt(ReduceMean(x * x) + eps): eps an initializer or a Constant node's output."""
    nodes = [helper.make_node("Mul", ["x", "x"], ["sq"], name="sq"),
             helper.make_node("ReduceMean", ["sq"], ["var"], name="mean", keepdims=1),
             helper.make_node("Add", ["var", "eps"], ["var_eps"], name="add_eps"),
             helper.make_node("Sqrt", ["var_eps"], ["std"], name="sqrt"),
             helper.make_node("Div", ["x", "std"], ["y"], name="div")]
    if constant_node:
        tensor = numpy_helper.from_array(np.asarray(eps, dtype=np.float32), "eps_value")
        nodes.insert(0, helper.make_node("Constant", [], ["eps"], name="eps_const", value=tensor))
        return graph(nodes, {})
    return graph(nodes, {"eps": eps})


def binary(op: str, value, name: str = "c") -> LintContext:
    """y = op(x, c)."""
    return graph([helper.make_node(op, ["x", name], ["y"], name=op.lower())], {name: np.asarray(value)})
