"""pipeline/lint/rules/auto_pad.py: SAME_LOWER is an error; SAME_UPPER a warning only for graphs from PyTorch."""
from __future__ import annotations

import numpy as np
import pytest
from onnx import TensorProto, helper, numpy_helper

from pipeline.lint.rules import auto_pad
from pipeline.lint.context import LintContext


def padded_graph(op_type: str, auto_pad_value: str | None):
    """One Conv or pooling node on a 1x2x8x8 input, built with onnx.helper."""
    attrs = {"kernel_shape": [3, 3], "strides": [2, 2]}
    if auto_pad_value is not None:
        attrs["auto_pad"] = auto_pad_value
    inputs, initializers = ["x"], []
    if op_type == "Conv":
        inputs.append("w")
        initializers.append(numpy_helper.from_array(np.ones((2, 2, 3, 3), np.float32), "w"))
    node = helper.make_node(op_type, inputs, ["y"], name=f"/block/{op_type}", **attrs)
    graph = helper.make_graph([node], "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 2, 8, 8])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)], initializers)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def check(model, from_pytorch: bool = True) -> list:
    return list(auto_pad.check(LintContext(model, from_pytorch=from_pytorch)))


@pytest.mark.parametrize("op_type", ["Conv", "MaxPool", "AveragePool"])
@pytest.mark.parametrize("from_pytorch", [True, False])
def test_same_lower_is_an_error(op_type, from_pytorch):
    (finding,) = check(padded_graph(op_type, "SAME_LOWER"), from_pytorch)

    assert (finding.rule, finding.severity, finding.node, finding.op_type) == ("auto_pad", "error", f"/block/{op_type}", op_type)
    assert (finding.expected, finding.actual, finding.module) == ("NOTSET with explicit pads", "SAME_LOWER", None)
    assert finding.message.startswith("auto_pad SAME_LOWER puts the extra padding first; TensorFlow has no equivalent")


@pytest.mark.parametrize("op_type", ["Conv", "MaxPool"])
def test_same_upper_from_pytorch_is_a_warning(op_type):
    (finding,) = check(padded_graph(op_type, "SAME_UPPER"), from_pytorch=True)

    assert (finding.severity, finding.actual) == ("warning", "SAME_UPPER")
    assert "auto_pad SAME_UPPER (TF 'SAME' placement) in a model exported from PyTorch" in finding.message


def test_same_upper_from_elsewhere_is_not_flagged():
    assert check(padded_graph("Conv", "SAME_UPPER"), from_pytorch=False) == []


@pytest.mark.parametrize("auto_pad_value", ["NOTSET", None, "VALID"])
@pytest.mark.parametrize("from_pytorch", [True, False])
def test_notset_absent_and_valid_are_not_flagged(auto_pad_value, from_pytorch):
    assert check(padded_graph("Conv", auto_pad_value), from_pytorch) == []


def test_ops_without_padding_are_ignored():
    relu = helper.make_node("Relu", ["x"], ["y"], auto_pad="SAME_LOWER")  # nonsense attribute, not our business
    graph = helper.make_graph([relu], "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])])
    assert check(helper.make_model(graph)) == []


def test_same_upper_for_a_module_with_padding_same_is_not_flagged(tmp_path):
    """The TorchScript exporter writes padding='same' as SAME_UPPER: that matches the module."""
    import torch

    from tests.lint.exports import export, load

    model = torch.nn.Sequential(torch.nn.Conv2d(2, 3, 4, padding="same")).eval()
    args = (torch.rand(1, 2, 8, 8),)
    onnx_model = load(export(model, args, tmp_path / "same.onnx", "torchscript"))
    conv = next(n for n in onnx_model.graph.node if n.op_type == "Conv")
    assert any(a.name == "auto_pad" and a.s == b"SAME_UPPER" for a in conv.attribute)
    assert list(auto_pad.check(LintContext(onnx_model, model, args))) == []
    model[0].padding = (1, 1)  # the module no longer says 'same': now it is suspicious
    (finding,) = auto_pad.check(LintContext(onnx_model, model, args))
    assert finding.severity == "warning" and finding.module == "0"
