"""pipeline/lint/rules/fp16_underflow.py: constants float16 flushes to zero or to a subnormal, where it matters."""
from __future__ import annotations

import numpy as np
from onnx import helper

from pipeline.lint.rules import fp16_underflow
from tests.lint.rules.fp16_graphs import binary, graph, layer_norm, rms_norm


def check(ctx) -> list:
    return list(fp16_underflow.check(ctx))


def test_layer_norm_epsilon_stored_as_zero_is_a_warning():
    (finding,) = check(layer_norm(1e-12))
    assert (finding.severity, finding.node, finding.op_type, finding.actual) == ("warning", "ln", "LayerNormalization", "1e-12 -> 0")
    assert "eps 1e-12 is stored as 0 in float16: Rsqrt(variance + 0) is Inf" in finding.message
    assert "raise it to 6.1e-05" in finding.message


def test_subnormal_epsilon_is_a_note():
    (finding,) = check(layer_norm(1e-6))
    assert finding.severity == "info"
    assert "stored as the float16 subnormal 1.013e-06" in finding.message


def test_normal_epsilons_have_no_finding():
    assert check(layer_norm(1e-4)) == [] and check(layer_norm(6.2e-5)) == []


def test_batch_norm_epsilon_matters_only_for_a_zero_variance_channel():
    def batch_norm(variance):
        node = helper.make_node("BatchNormalization", ["x", "s", "b", "m", "v"], ["y"], name="bn", epsilon=1e-12)
        return graph([node], {"s": np.ones(4), "b": np.zeros(4), "m": np.zeros(4), "v": np.asarray(variance)})

    assert check(batch_norm([1.0, 0.5, 2.0, 1.0])) == []
    (finding,) = check(batch_norm([1.0, 0.0, 2.0, 1.0]))
    assert (finding.node, finding.severity) == ("bn", "warning") and "a channel of zero variance" in finding.message


def test_epsilon_added_before_sqrt_is_named_on_its_add():
    for ctx in (rms_norm(np.float32(1e-12)), rms_norm(np.float32(1e-12), constant_node=True)):
        (finding,) = check(ctx)
        assert (finding.severity, finding.node, finding.op_type) == ("warning", "add_eps", "Add")
        assert "Sqrt ('sqrt') of Add(x, 0) is Inf or NaN where x is 0" in finding.message


def test_small_weights_are_not_reported():
    """A Mul by 1e-12 or a MatMul weight of 1e-7 loses precision, never makes Inf: the audit measures it."""
    assert check(binary("Mul", [1e-12, 1.0, 2.0, 3.0])) == []
    assert check(binary("MatMul", np.full((4, 4), 1e-7))) == []


def test_constant_denominator_flushed_to_zero_is_a_warning():
    (finding,) = check(binary("Div", 1e-12))
    assert (finding.severity, finding.op_type) == ("warning", "Div")
    assert "Div of 0 is Inf or NaN" in finding.message


def test_floor_before_log_is_judged():
    nodes = [helper.make_node("Max", ["x", "floor"], ["m"], name="max"), helper.make_node("Log", ["m"], ["y"], name="log")]
    (finding,) = check(graph(nodes, {"floor": np.float32(1e-10)}))
    assert (finding.node, finding.severity) == ("max", "warning")
