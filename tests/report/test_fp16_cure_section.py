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


PATCHED = {**CURE, "method": "patched in the fp16 file", "patch_note": None,
           "patches": [{"tensor": "arith.constant4", "readers": ["ADD (op 15) before RSQRT (op 16)"], "old": 1e-12,
                        "new": 6.103515625e-05, "values": 1, "copied": True}]}


def test_a_patched_cure_says_which_tensor_and_readers_and_that_nothing_was_converted():
    (summary,) = [line for line in markdown(PATCHED) if line.startswith("Shipped: yes")]
    assert ("Made without a second conversion: raised in `model_float16.tflite` itself (`arith.constant4` read by ADD "
            "(op 15) before RSQRT (op 16): 0 (1e-12 in the float32 file) -> 6.104e-05, a copy for these readers)") in summary
    assert "<code>arith.constant4</code>" in html(PATCHED) and "`" not in html(PATCHED)


def test_a_cure_the_patch_could_not_make_says_why_it_converted_again():
    converted = {**CURE, "method": "converted again", "patches": [],
                 "patch_note": "the patched file still holds NaN or Inf on sample(s) [0]"}
    (summary,) = [line for line in markdown(converted) if line.startswith("Shipped: yes")]
    assert summary.endswith("Made by converting `model.fp16_cured.onnx` again. The patch step: the patched file still "
                            "holds NaN or Inf on sample(s) [0].")
    nothing = {**CURE, "method": None, "shipped": False, "after": None, "reason": "no second conversion",
               "patch_note": "found no flushed epsilon"}
    assert any(line.endswith("No cured file was made. The patch step: found no flushed epsilon.") for line in markdown(nothing))
