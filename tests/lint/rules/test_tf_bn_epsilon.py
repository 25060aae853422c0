"""pipeline/lint/rules/tf_bn_epsilon.py: BatchNorm epsilon survives in the TF graph."""
from __future__ import annotations

import numpy as np
from onnx import TensorProto, helper, numpy_helper

from pipeline.lint.rules import tf_bn_epsilon
from pipeline.lint.context import LintContext
from pipeline.lint.tf_graph import TFGraph, TFOp

rng = np.random.default_rng(0)
GAMMA, BETA = rng.uniform(0.5, 1.5, 4).astype(np.float32), rng.standard_normal(4).astype(np.float32)
MEAN, VAR = rng.standard_normal(4).astype(np.float32), rng.uniform(0.01, 0.1, 4).astype(np.float32)


def onnx_bn(epsilon=1e-5):
    inits = [numpy_helper.from_array(v, n) for v, n in ((GAMMA, "g"), (BETA, "b"), (MEAN, "m"), (VAR, "v"))]
    node = helper.make_node("BatchNormalization", ["x", "g", "b", "m", "v"], ["y"], name="bn_0", epsilon=epsilon)
    graph = helper.make_graph([node], "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4, 2, 2])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)], inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 15)])


def folded_mul(epsilon: float) -> TFGraph:
    scale = (GAMMA.astype(np.float64) / np.sqrt(VAR.astype(np.float64) + epsilon)).astype(np.float32)
    return TFGraph([TFOp("bn/mul", "Mul", ("x", "scale"), {})], {"scale": scale})


def variance_add(epsilon: float) -> TFGraph:
    return TFGraph([TFOp("bn/add", "AddV2", ("var", "eps"), {})], {"var": VAR, "eps": np.float32(epsilon)})


def check(model, graph):
    return list(tf_bn_epsilon.check(LintContext(model, tf_graph=graph)))


def test_epsilon_kept_is_fine_in_both_lowerings():
    assert check(onnx_bn(), folded_mul(1e-5)) == []
    assert check(onnx_bn(), variance_add(1e-5)) == []


def test_keras_default_epsilon_in_the_tf_graph_is_an_error():
    (finding,) = check(onnx_bn(1e-5), variance_add(1e-3))
    assert (finding.rule, finding.severity, finding.node, finding.expected) == ("tf_bn_epsilon", "error", "bn_0", "1e-05")
    assert finding.actual == "0.001 in bn/add"


def test_folded_scale_with_another_epsilon_reports_it():
    (finding,) = check(onnx_bn(1e-5), folded_mul(1e-3))
    assert finding.severity == "error" and finding.actual.startswith("0.001")


def test_not_located_is_said_not_guessed():
    (finding,) = check(onnx_bn(), TFGraph([], {}))
    assert finding.severity == "info" and "could not locate this BatchNormalization" in finding.message
