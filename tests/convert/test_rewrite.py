"""The function-op rewrite: onnx's own bodies, inlined, equal under ONNX Runtime, verified before use."""
from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from pipeline.convert.rewrite import expand_functions, rewrite_for_conversion
from pipeline.errors import ConversionError


def _model(nodes, inputs, outputs, initializers=(), opset=20) -> onnx.ModelProto:
    graph = helper.make_graph(nodes, "g", inputs, outputs, list(initializers))
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    return onnx.shape_inference.infer_shapes(model)


def _layernorm_chw(shape=(1, 5, 6, 7)) -> onnx.ModelProto:
    rng = np.random.default_rng(1)
    scale = numpy_helper.from_array(rng.uniform(0.5, 1.5, shape[1:]).astype(np.float32), "scale")
    bias = numpy_helper.from_array(rng.uniform(-0.5, 0.5, shape[1:]).astype(np.float32), "bias")
    node = helper.make_node("LayerNormalization", ["x", "scale", "bias"], ["y"], name="ln", axis=-3, epsilon=1e-5)
    return _model([node], [helper.make_tensor_value_info("x", TensorProto.FLOAT, shape)],
                  [helper.make_tensor_value_info("y", TensorProto.FLOAT, shape)], [scale, bias])


def _gelu(shape=(2, 9)) -> onnx.ModelProto:
    node = helper.make_node("Gelu", ["x"], ["y"], name="gelu", approximate="tanh")
    return _model([node], [helper.make_tensor_value_info("x", TensorProto.FLOAT, shape)],
                  [helper.make_tensor_value_info("y", TensorProto.FLOAT, shape)])


def _run(model: onnx.ModelProto, x: np.ndarray) -> np.ndarray:
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return session.run(None, {"x": x})[0]


@pytest.mark.parametrize("build, shape", [(_layernorm_chw, (1, 5, 6, 7)), (_layernorm_chw, (2, 3, 4, 4)), (_gelu, (2, 9))])
def test_function_ops_are_inlined_and_compute_the_same(build, shape):
    model = build(shape)
    expanded, done = expand_functions(model)
    onnx.checker.check_model(expanded, full_check=True)
    op = model.graph.node[0].op_type
    assert done == {model.graph.node[0].name: op}
    assert op not in {n.op_type for n in expanded.graph.node}
    x = np.random.default_rng(0).uniform(-2, 2, shape).astype(np.float32)
    np.testing.assert_allclose(_run(expanded, x), _run(model, x), atol=1e-5, rtol=1e-5)


def test_only_named_nodes_are_expanded():
    model = _layernorm_chw()
    same, done = expand_functions(model, nodes={"another"})
    assert done == {}
    assert [n.op_type for n in same.graph.node] == ["LayerNormalization"]


def _saved(model: onnx.ModelProto, tmp_path) -> tuple:
    path = tmp_path / "model.onnx"
    onnx.save(model, str(path))
    x = np.random.default_rng(0).uniform(-1, 1, (3, 1, 5, 6, 7)).astype(np.float32)
    feeds = [{"x": sample} for sample in x]
    reference = {"y": np.stack([_run(model, f["x"]) for f in feeds])}
    return path, feeds, reference


def test_the_rewrite_is_verified_before_conversion(tmp_path):
    path, feeds, reference = _saved(_layernorm_chw(), tmp_path)
    rewrite = rewrite_for_conversion(path, tmp_path / "out.onnx", feeds, reference, "pytorch", atol=1e-4)
    assert rewrite.expanded == {"ln": "LayerNormalization"}
    assert rewrite.max_abs <= 1e-4
    assert "LayerNormalization" not in {n.op_type for n in onnx.load(str(rewrite.path)).graph.node}
    assert "LayerNormalization" in rewrite.describe()


def test_a_rewrite_that_disagrees_is_refused(tmp_path):
    path, feeds, reference = _saved(_layernorm_chw(), tmp_path)
    wrong = {"y": reference["y"] + 0.5}
    with pytest.raises(ConversionError, match=r"^rewrite: ONNX Runtime on the rewritten graph is .* from pytorch .*; not converted$"):
        rewrite_for_conversion(path, tmp_path / "out.onnx", feeds, wrong, "pytorch", atol=1e-4)


def test_nothing_to_expand_is_an_error(tmp_path):
    node = helper.make_node("Relu", ["x"], ["y"], name="relu")
    model = _model([node], [helper.make_tensor_value_info("x", TensorProto.FLOAT, (1, 5, 6, 7))],
                   [helper.make_tensor_value_info("y", TensorProto.FLOAT, (1, 5, 6, 7))])
    path, feeds, reference = _saved(model, tmp_path)
    with pytest.raises(ConversionError, match=r"^rewrite: no function op to expand"):
        rewrite_for_conversion(path, tmp_path / "out.onnx", feeds, reference, "pytorch", atol=1e-4)
