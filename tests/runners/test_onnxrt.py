"""pipeline/runners/onnxrt.py: the ONNX route's float64 oracle means what the float32 graph means."""
from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from pipeline.inputs import TensorSpec
from pipeline.runners.onnxrt import OnnxFloat64Runner, OnnxRuntimeRunner

SHAPE = [2, 6, 3, 1]


def old_opset_head(path, op_type: str, axis: int | None, opset: int = 9):
    """A 1x1 Conv (ONNX Runtime has no double Conv, so onnx's reference evaluator runs the float64 copy)
    followed by `op_type` at an old opset, `axis` left to its default when None."""
    weight = numpy_helper.from_array(np.random.default_rng(0).normal(size=(6, 6, 1, 1)).astype(np.float32), "w")
    extra = {} if axis is None else {"axis": axis}
    graph = helper.make_graph(
        [helper.make_node("Conv", ["x", "w"], ["c"], name="conv"),
         helper.make_node(op_type, ["c"], ["y"], name="head", **extra)],
        "head", [helper.make_tensor_value_info("x", TensorProto.FLOAT, SHAPE)],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, SHAPE)], [weight])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)], ir_version=8)
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return path


def both(path):
    specs = [TensorSpec("x", tuple(SHAPE), "float32")]
    feed = {"x": np.random.default_rng(1).normal(size=SHAPE).astype(np.float32) * 3}
    fp32, fp64 = OnnxRuntimeRunner(path, specs, ["y"]), OnnxFloat64Runner(path, specs, ["y"])
    out = []
    for runner in (fp32, fp64):
        runner.activate()
        try:
            out.append(runner.infer(feed)["y"])
        finally:
            runner.deactivate()
    return out, fp64.engine


@pytest.mark.parametrize("op_type", ["Softmax", "LogSoftmax", "Hardmax"])
@pytest.mark.parametrize("axis", [None, 1, 2])
def test_an_old_opset_softmax_in_the_float64_oracle_agrees_with_onnx_runtime(tmp_path, op_type, axis):
    (low, high), engine = both(old_opset_head(tmp_path / "m.onnx", op_type, axis))
    assert engine == "onnx's reference evaluator"
    assert high.dtype == np.float64 and high.shape == low.shape
    np.testing.assert_allclose(high, low, rtol=1e-5, atol=1e-6)


def test_opset9_softmax_without_axis_normalizes_over_every_axis_from_1(tmp_path):
    """light_squeezenet's head: the classes on axis 1, size-1 axes after them; each sample sums to 1."""
    (_, high), _ = both(old_opset_head(tmp_path / "m.onnx", "Softmax", None))
    np.testing.assert_allclose(high.sum(axis=(1, 2, 3)), 1.0)
    assert not np.allclose(high.sum(axis=1), 1.0)  # not per axis-1 column: the old coercion to 2-D


def test_an_opset13_softmax_is_left_as_it_is(tmp_path):
    (low, high), _ = both(old_opset_head(tmp_path / "m.onnx", "Softmax", None, opset=13))
    np.testing.assert_allclose(high.sum(axis=-1), 1.0)
    np.testing.assert_allclose(high, low, rtol=1e-5, atol=1e-6)


@pytest.mark.slow
def test_light_squeezenets_float64_graph_agrees_with_onnx_runtime(onnx_test_data):
    """onnx's own opset-9 SqueezeNet, whose Softmax has no axis: 0.001 per class, as ONNX Runtime gives."""
    from pipeline.audit.oracle_check import RoundingBound, check

    path = onnx_test_data / "light" / "light_squeezenet.onnx"
    model = onnx.load(str(path))
    initializers = {i.name for i in model.graph.initializer}
    name = next(i.name for i in model.graph.input if i.name not in initializers)
    specs, output = [TensorSpec(name, (1, 3, 224, 224), "float32")], model.graph.output[0].name
    feed = {name: np.random.default_rng(0).random((1, 3, 224, 224), dtype=np.float32)}
    runs = {}
    for runner in (OnnxRuntimeRunner(path, specs, [output]), OnnxFloat64Runner(path, specs, [output])):
        runner.activate()
        try:
            runs[runner.name] = {output: runner.infer(feed)[output][None]}
        finally:
            runner.deactivate()
    truth = runs["onnxruntime_fp64"][output]
    np.testing.assert_allclose(truth.sum(axis=(1, 2, 3, 4)), 1.0)
    assert truth.max() < 0.1  # spread over the 1000 classes, not 1.0 each
    assert check("ONNX Runtime", runs["onnxruntime"], {output: truth}, RoundingBound.of(model)) is None
