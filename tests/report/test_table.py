"""pipeline/report/table.py: a dynamic model's rows name the shape they ran at; a static model's do not."""
from __future__ import annotations

from pipeline.report.table import rows


def comparison(candidate: str, shape: dict | None, verdict: str = "pass", reason: str | None = None) -> dict:
    c = {"candidate": candidate, "output": "output", "max_abs": 1e-7, "noise_ratio": 0.2, "mean_abs": 1e-8, "cosine": 1.0,
         "snr_db": 140.0, "rule": "noise floor", "atol": 1e-4, "rtol": 1e-4, "passed": verdict == "pass",
         "verdict": verdict, "reason": reason}
    return c if shape is None else {**c, "shape": shape}


def test_a_row_per_shape_names_it():
    table = rows({"comparisons": [comparison("tflite_fp32", {}), comparison("tflite_fp32", {"batch": 3, "height": 47}, "fail",
                                                                            "at batch 3, height 47, width 64: 10x the floor")]})
    assert [r[0] for r in table] == ["TFLite fp32 @ example", "TFLite fp32 @ batch 3, height 47"]
    assert table[1][-1] == "FAIL: at batch 3, height 47, width 64: 10x the floor"


def test_a_static_models_rows_are_unchanged():
    assert rows({"comparisons": [comparison("keras", None)]})[0][0] == "Keras"
