"""pipeline/converters/onnx2tf_v1.onnx_names: each tensor of onnx2tf's map named as the ONNX file names it."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from pipeline.converters.onnx2tf_v1 import onnx_names


def conv_bn_relu(path, conv_out: str = "/body/body.0/Conv_output_0", bn_out: str = "/body/body.1/BatchNorm_output_0"):
    """x -> Conv -> BatchNormalization -> Relu -> y, TorchScript-style names."""
    rng = np.random.default_rng(0)
    inits = [numpy_helper.from_array(rng.normal(size=(4, 3, 3, 3)).astype(np.float32), "w")]
    inits += [numpy_helper.from_array(v.astype(np.float32), n) for n, v in
              (("s", rng.random(4) + 0.5), ("b", rng.normal(size=4)), ("m", rng.normal(size=4)), ("v", rng.random(4) + 0.5))]
    nodes = [helper.make_node("Conv", ["x", "w"], [conv_out], name="/body/body.0/Conv", pads=[1, 1, 1, 1]),
             helper.make_node("BatchNormalization", [conv_out, "s", "b", "m", "v"], [bn_out], name="/body/body.1/BatchNorm"),
             helper.make_node("Relu", [bn_out], ["y"], name="/body/body.2/Relu")]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 8, 8])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4, 8, 8])], inits)
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8), str(path))
    return path


def test_onnx2tfs_sanitized_names_come_back_as_the_onnx_names(tmp_path):
    names = onnx_names(conv_bn_relu(tmp_path / "m.onnx", conv_out="/a:0"))
    assert names["wa/a__0"] == "/a:0" and names["/a:0"] == "/a:0"
    assert names["wa/body/body.1/BatchNorm_output_0"] == "/body/body.1/BatchNorm_output_0"
    assert names["y"] == "y"


def test_a_batchnorm_that_onnxsim_fused_into_its_conv_is_named_by_the_batchnorms_output(tmp_path):
    original = conv_bn_relu(tmp_path / "m.onnx")
    # onnxsim's command, as onnx2tf runs it (in a process of its own: in-process it may crash next to TF)
    subprocess.run([str(Path(sys.executable).parent / "onnxsim"), str(original), str(tmp_path / "simplified.onnx")],
                   check=True, capture_output=True)
    simplified = onnx.load(str(tmp_path / "simplified.onnx"))
    assert [n.op_type for n in simplified.graph.node] == ["Conv", "Relu"]  # onnxsim fused the BatchNorm

    names = onnx_names(original, tmp_path / "simplified.onnx")
    # the fused Conv kept its output name, but it now holds the BatchNormalization's output
    assert names["wa/body/body.0/Conv_output_0"] == "/body/body.1/BatchNorm_output_0"
    assert names["/body/body.0/Conv_output_0"] == "/body/body.1/BatchNorm_output_0"
    assert onnx_names(original)["/body/body.0/Conv_output_0"] == "/body/body.0/Conv_output_0"  # nothing fused
