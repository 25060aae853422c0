"""pipeline/converters/pool_rewrite.py: 3-D and dilated pools as the 2-D pools TFLite has, exactly."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper

from pipeline.converters.pool_rewrite import rewrite_pools
from pipeline.errors import ConversionError


def _pool_model(path: Path, op: str, shape: list[int], out: list[int], **attrs) -> Path:
    graph = helper.make_graph([helper.make_node(op, ["x"], ["y"], name="pool_0", **attrs)], "pool",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, shape)],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, out)])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))
    return path


def _run(path: Path, x: np.ndarray) -> np.ndarray:
    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]


CASES = {
    "avg3d padded, padding not counted, ceil": ("AveragePool", [2, 3, 5, 6, 7], [2, 3, 3, 4, 4],
                                                dict(kernel_shape=[2, 3, 2], strides=[2, 2, 2], pads=[1, 1, 0, 0, 1, 1],
                                                     count_include_pad=0, ceil_mode=1)),
    "avg3d padding counted": ("AveragePool", [1, 2, 4, 4, 4], [1, 2, 3, 3, 3],
                              dict(kernel_shape=[2, 2, 2], strides=[2, 2, 2], pads=[1, 1, 1, 1, 1, 1], count_include_pad=1)),
    "max3d padded": ("MaxPool", [2, 3, 5, 5, 5], [2, 3, 3, 3, 3],
                     dict(kernel_shape=[2, 2, 2], strides=[2, 2, 2], pads=[1, 1, 1, 1, 1, 1])),
    "dilated max2d": ("MaxPool", [1, 2, 40, 50], [1, 2, 5, 7],
                      dict(kernel_shape=[3, 2], strides=[6, 4], dilations=[3, 2], pads=[2, 1, 2, 1])),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_the_rewritten_pool_computes_what_the_original_does_with_2d_pools_only(tmp_path, case):
    op, shape, out, attrs = CASES[case]
    source = _pool_model(tmp_path / "pool.onnx", op, shape, out, **attrs)
    rewrite = rewrite_pools(source, tmp_path / "rewritten.onnx")
    assert rewrite is not None and list(rewrite.rewritten) == ["pool_0"]
    model = onnx.load(str(rewrite.path))
    pools = [n for n in model.graph.node if n.op_type == op]
    assert pools and all(len(helper.get_attribute_value(next(a for a in n.attribute if a.name == "kernel_shape"))) == 2
                         and not any(a.name == "dilations" for a in n.attribute) for n in pools)
    x = np.random.default_rng(0).standard_normal(shape).astype(np.float32)
    np.testing.assert_allclose(_run(rewrite.path, x), _run(source, x), rtol=1e-6, atol=1e-6)


def test_a_pool_with_no_exact_2d_form_is_left_alone(tmp_path):
    # strides 5 are not a multiple of dilations 2: the pool reads positions a strided slice would skip
    source = _pool_model(tmp_path / "pool.onnx", "MaxPool", [1, 1, 20, 20], [1, 1, 4, 4],
                         kernel_shape=[3, 3], strides=[5, 5], dilations=[2, 2])
    assert rewrite_pools(source, tmp_path / "rewritten.onnx") is None
    plain = _pool_model(tmp_path / "plain.onnx", "AveragePool", [1, 1, 8, 8], [1, 1, 4, 4], kernel_shape=[2, 2], strides=[2, 2])
    assert rewrite_pools(plain, tmp_path / "rewritten.onnx") is None


def test_a_rewrite_onnx_runtime_cannot_run_is_refused_in_one_line(tmp_path):
    source = _pool_model(tmp_path / "pool.onnx", "MaxPool", [1, 1, 4, 4, 4], [1, 1, 3, 3, 3],  # declared wrong: 2 is right
                         kernel_shape=[2, 2, 2], strides=[2, 2, 2])
    with pytest.raises(ConversionError, match=r"pool rewrite: ONNX Runtime cannot run the graph or its rewrite .*not rewritten"):
        rewrite_pools(source, tmp_path / "rewritten.onnx")


@pytest.mark.slow
def test_onnx2tf_1x_makes_a_3d_pool_a_tflite_file_of_builtin_ops_that_agrees_with_onnx_runtime(tmp_path, no_network):
    """onnx2tf 1.x alone writes FlexAvgPool3D, which the standard interpreter cannot run."""
    from ai_edge_litert.interpreter import Interpreter

    from pipeline.converters import ConversionOptions, get_converter
    from pipeline.converters.tflite_ops import read_ops

    source = _pool_model(tmp_path / "pool.onnx", "AveragePool", [1, 2, 4, 6, 6], [1, 2, 2, 3, 3],
                         kernel_shape=[2, 2, 2], strides=[2, 2, 2])
    out = tmp_path / "out"
    out.mkdir()
    result = get_converter().convert(source, out, out / "convert.log", ConversionOptions(outputs=("tf_saved_model", "tflite_fp32")))
    assert read_ops(result.tflite["fp32"]).standard
    assert any("rewritten before conversion" in note for note in result.notes)
    x = np.random.default_rng(1).standard_normal((1, 2, 4, 6, 6)).astype(np.float32)
    runner = Interpreter(model_path=str(result.tflite["fp32"])).get_signature_runner()
    got = next(iter(runner(**{next(iter(runner.get_input_details())): x.transpose(0, 2, 3, 4, 1)}).values()))
    expected = _run(source, x)
    np.testing.assert_allclose(got.transpose(0, 4, 1, 2, 3) if got.shape != expected.shape else got, expected, rtol=1e-6, atol=1e-6)
