"""pipeline/lint/rules/fp16_guard.py: constants whose float16 rounding changes what they guard."""
from __future__ import annotations

import numpy as np
from onnx import helper

from pipeline.lint.rules import fp16_guard
from tests.lint.rules.fp16_graphs import binary, graph


def check(ctx) -> list:
    return list(fp16_guard.check(ctx))


def test_equal_to_an_unrepresentable_value_is_a_warning():
    (finding,) = check(binary("Equal", 0.1))
    assert (finding.severity, finding.node, finding.op_type) == ("warning", "equal", "Equal")
    assert finding.actual == "0.0999755859"
    assert "an input of exactly 0.100000001 no longer equals it" in finding.message


def test_moved_threshold_and_bound_are_notes():
    (threshold,) = check(binary("Greater", 0.3))
    assert threshold.severity == "info" and "the Greater threshold, 0.300000012, is stored as 0.300048828" in threshold.message
    (bound,) = check(graph([helper.make_node("Clip", ["x", "low", "high"], ["y"], name="clip")],
                           {"low": np.float32(0.0), "high": np.float32(2049.0)}))
    assert (bound.node, bound.expected, bound.actual) == ("clip", "2049", "2048")


def test_representable_guards_and_other_ops_have_no_finding():
    assert check(binary("Equal", 0.5)) == [] and check(binary("Less", 6.0)) == []
    assert check(binary("Mul", 0.1)) == []  # a weight's rounding is a precision cost, not a guard


def test_flushed_and_clamped_values_are_left_to_the_other_rules():
    assert check(binary("Max", 1e-12)) == [] and check(binary("Min", 1e9)) == []
