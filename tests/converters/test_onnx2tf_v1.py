"""The onnx2tf 1.x adapter runs on our pinned stack (newer numpy, TF and onnx than it pins)."""
from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from pipeline.converters import ConversionOptions, get_converter
from pipeline.errors import ConversionError

pytestmark = pytest.mark.slow


def _conv_relu(path: Path, middle: str = "c") -> Path:
    weight = numpy_helper.from_array(np.random.default_rng(0).standard_normal((4, 3, 3, 3)).astype(np.float32), "w")
    nodes = [
        helper.make_node("Conv", ["x", "w"], [middle], name="conv_0", pads=[1, 1, 1, 1], strides=[2, 2]),
        helper.make_node("Relu", [middle], ["y"], name="relu_1"),
    ]
    graph = helper.make_graph(
        nodes, "tiny", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 8, 8])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4, 4, 4])], initializer=[weight],
    )
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))
    return path


def test_onnx2tf_1x_converts_to_every_format(tmp_path, no_network):
    source = _conv_relu(tmp_path / "tiny.onnx")
    digest = hashlib.sha256(source.read_bytes()).hexdigest()
    out = tmp_path / "out"
    out.mkdir()
    converter = get_converter()
    assert converter.version().startswith("1.")
    result = converter.convert(source, out, out / "convert.log", ConversionOptions())
    assert (result.saved_model / "saved_model.pb").exists()
    assert result.keras.name == "model.keras" and result.keras.exists()
    assert set(result.tflite) == {"fp32", "fp16"}
    assert [t.shape for t in result.inputs] == [(1, 8, 8, 3)]  # channel-last, as onnx2tf does
    assert [t.shape for t in result.outputs] == [(1, 4, 4, 4)]
    assert "onnx" in (out / "convert.log").read_text().lower()
    assert hashlib.sha256(source.read_bytes()).hexdigest() == digest, "onnxsim must work on a copy, never the input"
    assert not (out / ".onnx2tf-work").exists()


def test_conversion_failure_names_node_op_and_log(tmp_path):
    graph = helper.make_graph(
        [helper.make_node("Relu", ["x"], ["r"], name="relu_0"), helper.make_node("Bernoulli", ["r"], ["y"], name="bern_1")],
        "bad", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])],
    )
    source = tmp_path / "bad.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(source))
    out = tmp_path / "out"
    out.mkdir()
    with pytest.raises(ConversionError, match=r"onnx2tf 1\.\d+\.\d+ failed on node 'bern_1' \(Bernoulli\): .*; full log: .*convert.log"):
        get_converter().convert(source, out, out / "convert.log", ConversionOptions())


def test_the_layer_model_names_each_tensor_as_onnx_does_even_where_onnx2tf_renames_it(tmp_path, no_network):
    """A TorchScript export names tensors '/body/body.0/Conv_output_0'; onnx2tf's map calls it
    'wa/body/...'. The layer model must say the ONNX name, or nothing aligns with ONNX Runtime."""
    source = _conv_relu(tmp_path / "tiny.onnx", middle="/body/body.0/Conv_output_0")
    out = tmp_path / "layers"
    out.mkdir()
    made = get_converter().layer_model(source, out, out / "layers.log", ConversionOptions(outputs=("saved_model",)))
    assert made.path is not None, made.note
    assert "/body/body.0/Conv_output_0" in [t["tensor"] for t in made.tensors]
