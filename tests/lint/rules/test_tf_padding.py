"""pipeline/lint/rules/tf_padding.py: a TF conv that pads differently from its ONNX node is an error."""
from __future__ import annotations

import numpy as np
import pytest
from onnx import TensorProto, helper, numpy_helper

from pipeline.lint.rules import tf_padding
from pipeline.lint.context import LintContext
from pipeline.lint.tf_graph import TFGraph, TFOp

WEIGHT = np.random.default_rng(0).standard_normal((4, 3, 3, 3)).astype(np.float32)


def onnx_conv(pads, strides=(2, 2)):
    node = helper.make_node("Conv", ["x", "w"], ["y"], name="conv_0", pads=list(pads), strides=list(strides))
    graph = helper.make_graph([node], "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 8, 8])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)], [numpy_helper.from_array(WEIGHT, "w")])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def tf_graph(padding: str, pad_op: list[list[int]] | None = None, filter_value=None) -> TFGraph:
    ops, values = [], {"filter": WEIGHT.transpose(2, 3, 1, 0) if filter_value is None else filter_value}
    conv_input = "x"
    if pad_op is not None:
        ops.append(TFOp("pad", "Pad", ("x", "paddings"), {}))
        values["paddings"] = np.array(pad_op, dtype=np.int32)
        conv_input = "pad"
    ops.append(TFOp("conv", "Conv2D", (conv_input, "filter"), {"padding": padding}))
    return TFGraph(ops, values)


def check(model, graph):
    return list(tf_padding.check(LintContext(model, tf_graph=graph)))


def test_same_where_pytorch_pads_symmetrically_is_an_error():
    (finding,) = check(onnx_conv([1, 1, 1, 1]), tf_graph("SAME"))
    assert (finding.rule, finding.severity, finding.node) == ("tf_padding", "error", "conv_0")
    assert finding.expected == "[1, 1, 1, 1]" and finding.actual.startswith("[0, 0, 1, 1] (SAME in conv)")
    assert "needs explicit padding (a Pad op then VALID), not 'SAME'" in finding.message


def test_explicit_pad_then_valid_is_fine():
    assert check(onnx_conv([1, 1, 1, 1]), tf_graph("VALID", [[0, 0], [1, 1], [1, 1], [0, 0]])) == []


def test_explicit_pad_with_wrong_amounts_is_an_error():
    (finding,) = check(onnx_conv([1, 1, 1, 1]), tf_graph("VALID", [[0, 0], [0, 1], [0, 1], [0, 0]]))
    assert finding.severity == "error" and finding.actual.startswith("[0, 0, 1, 1] (VALID")


def test_same_that_equals_the_onnx_pads_is_fine():
    # stride 1, 3x3: TF 'SAME' pads [1, 1, 1, 1], exactly the ONNX pads
    assert check(onnx_conv([1, 1, 1, 1], strides=(1, 1)), tf_graph("SAME")) == []


def test_asymmetric_onnx_pads_matched_by_same_are_fine():
    assert check(onnx_conv([0, 0, 1, 1]), tf_graph("SAME")) == []


def test_a_conv_not_found_by_its_weights_is_said_not_guessed():
    (finding,) = check(onnx_conv([1, 1, 1, 1]), tf_graph("SAME", filter_value=np.zeros((3, 3, 3, 4), np.float32)))
    assert finding.severity == "info"
    assert finding.message.startswith("could not locate this Conv in the SavedModel by its weights")


def test_without_a_tf_graph_nothing_runs():
    assert list(tf_padding.check(LintContext(onnx_conv([1, 1, 1, 1])))) == []


@pytest.mark.slow
def test_real_conversions_keep_explicit_padding(seed_run):
    tf_findings = [f for f in seed_run.report["lint"]["findings"] if f["rule"].startswith("tf_")]
    assert [f for f in tf_findings if f["severity"] != "info" or "could not locate" in f["message"]] == []
