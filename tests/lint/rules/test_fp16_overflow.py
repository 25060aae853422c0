"""pipeline/lint/rules/fp16_overflow.py: constants beyond float16's range."""
from __future__ import annotations

import numpy as np
from onnx import helper

from pipeline.lint.rules import fp16_overflow
from tests.lint.rules.fp16_graphs import binary, graph


def check(ctx) -> list:
    return list(fp16_overflow.check(ctx))


def masked_softmax(fill: float):
    """y = Softmax(x + (1 - keep) * fill), HF's attention mask."""
    nodes = [helper.make_node("Sub", ["one", "keep"], ["drop"], name="invert"),
             helper.make_node("Mul", ["drop", "fill"], ["mask"], name="scale_mask"),
             helper.make_node("Add", ["x", "mask"], ["scores"], name="add_mask"),
             helper.make_node("Softmax", ["scores"], ["y"], name="softmax", axis=-1)]
    return graph(nodes, {"one": np.float32(1), "keep": np.array([1, 1, 0, 0]), "fill": np.float32(fill)})


def test_finfo_min_mask_is_named_with_its_softmax():
    (finding,) = check(masked_softmax(float(np.finfo(np.float32).min)))
    assert (finding.severity, finding.node, finding.op_type) == ("info", "scale_mask", "Mul")
    assert finding.actual == "-3.403e+38 -> -65504"
    assert "as a mask before 'softmax', TFLite's converter stores -65504" in finding.message
    assert "a fully masked Softmax row or inf * 0 is NaN" in finding.message


def test_large_scale_factor_is_a_warning():
    (finding,) = check(binary("Mul", [1.0, 2.0, 1e6, 3.0]))
    assert (finding.severity, finding.node) == ("warning", "mul")
    assert "1e+06 (1 of 4 values) is beyond float16's range" in finding.message
    assert "15.3x smaller" in finding.message


def test_clip_bound_is_a_note():
    nodes = [helper.make_node("Clip", ["x", "low", "high"], ["y"], name="clip")]
    (finding,) = check(graph(nodes, {"low": np.float32(0), "high": np.float32(1e9)}))
    assert (finding.severity, finding.node) == ("info", "clip") and "as a Clip bound" in finding.message


def test_values_in_range_have_no_finding():
    assert check(masked_softmax(-1e4)) == [] and check(binary("Mul", [65504.0, -65504.0, 1.0, 0.0])) == []
