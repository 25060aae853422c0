"""pipeline/report/sections/fp16_cure.py: the report's fp16 cure section."""
from __future__ import annotations

from pipeline.report.sections.fp16_cure import html, markdown

CURE = {"onnx": "model.fp16_cured.onnx", "reference": "pytorch", "shipped": True, "reason": "no NaN or Inf",
        "changes": [{"node": "ln", "op_type": "LayerNormalization", "module": "norm1", "constant": "epsilon",
                     "old": 1e-12, "new": 6.103515625e-05, "values": 1}],
        "before": {"max_abs": None, "non_finite_samples": [4]}, "after": {"max_abs": 0.0124, "non_finite_samples": []}}


def test_section_names_each_constant_and_both_errors():
    lines = markdown(CURE)
    assert "## fp16 cure" in lines and "| ln | LayerNormalization | norm1 | epsilon | 1e-12 | 6.104e-05 |" in lines
    assert "- before: max_abs against pytorch n/a (NaN or Inf); samples with NaN or Inf: [4]" in lines
    assert "- after: max_abs against pytorch 0.0124; samples with NaN or Inf: none" in lines


def test_no_cure_no_section():
    assert markdown(None) == []


def test_the_html_section_lists_the_same_constants():
    page = html(CURE)
    assert page.startswith("<section") and "LayerNormalization" in page and "6.104e-05" in page
    assert html(None) == ""
