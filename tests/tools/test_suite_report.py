"""pipeline/tools/suite_report.py: pass rates, category counts, SUITE.md and suite.json."""
from __future__ import annotations

import json

import dataclasses

from pipeline.tools.suite_report import CATEGORIES, CaseResult, Failure, OutputCheck, StrategyRun, markdown, summarize, write_json


def result(case: str, status: str, category: str | None = None, reason: str | None = None) -> CaseResult:
    folder = case.split("/")[0]
    failures = (Failure("compare", None, reason),) if category else ()
    return CaseResult(case, folder, status, category, 1e-7 if status == "pass" else None, 1.25, reason, 6, failures,
                      (OutputCheck("tflite_fp32", "y", float("nan"), status, reason),))


RESULTS = [
    result("pytorch-converted/test_a", "pass"),
    result("pytorch-converted/test_b", "fail", "layout", "shape mismatch: a | b"),
    result("pytorch-operator/test_c", "pass"),
    result("pytorch-operator/test_d", "inconclusive", reason="the reference output's largest magnitude 0 is within atol"),
]


def test_pass_rates_overall_and_per_folder_and_every_category_counted():
    report = summarize(RESULTS, 12.34, "all")
    assert [(r.scope, r.cases, r.passed, r.failed, r.inconclusive) for r in report.folders] == [
        ("pytorch-converted", 2, 1, 1, 0), ("pytorch-operator", 2, 1, 0, 1)]
    assert (report.overall.cases, report.overall.passed, report.overall.rate) == (4, 2, 0.5)
    assert list(report.categories) == list(CATEGORIES)
    assert report.categories["layout"] == 1 and sum(report.categories.values()) == 1


def test_markdown_has_the_rates_the_categories_and_one_escaped_row_per_case():
    text = markdown(summarize(RESULTS, 12.34, "--filter test_"))
    assert "cases: --filter test_." in text
    assert "**Pass rate: 2/4 (50.0%)**" in text
    assert "| pytorch-operator | 2 | 1 | 0 | 1 | 50.0% |" in text
    assert "| layout | 1 |" in text and "| old opset | 0 |" in text
    assert "| pytorch-converted/test_b | fail | layout |  |  | 1.2 | shape mismatch: a \\| b |" in text
    assert "| pytorch-converted/test_a | pass |  |  | 1.00e-07 | 1.2 |  |" in text


def test_json_is_strict_and_keeps_the_failure_record(tmp_path):
    path = tmp_path / "out" / "suite.json"
    write_json(path, summarize(RESULTS, 1.0, "all", finished=False))
    record = json.loads(path.read_text())  # NaN max_abs became null
    assert record["finished"] is False
    assert record["cases"][1]["failures"] == [{"stage": "compare", "error": None, "message": "shape mismatch: a | b", "expected": True}]
    assert record["cases"][0]["checks"][0]["max_abs"] is None
    assert record["folders"][0]["rate"] == 0.5


def made_by(result_: CaseResult, converter: str, *tried: str) -> CaseResult:
    runs = tuple(StrategyRun("s", c, "raised", 0.1) for c in tried)
    return dataclasses.replace(result_, converter=converter, strategy="default", tried=runs)


def test_passes_are_counted_per_converter_that_made_the_judged_files_and_each_converter_where_it_ran():
    results = [made_by(RESULTS[0], "onnx2tf 1.29", "onnx2tf 1.29"),
               made_by(RESULTS[1], "onnx2tf 1.29", "onnx2tf 1.29", "onnx2tf 2.6"),  # failed: not a pass of either
               made_by(RESULTS[2], "onnx2tf 2.6", "onnx2tf 1.29", "onnx2tf 1.29", "onnx2tf 2.6")]
    report = summarize(results, 1.0, "all", True, (("onnx2tf 1.29", "onnx2tf 2.6"), ()))
    assert report.passed_by() == {"onnx2tf 1.29": 1, "onnx2tf 2.6": 1}
    assert report.tried_by() == {"onnx2tf 1.29": 3, "onnx2tf 2.6": 2}
    text = markdown(report)
    assert "**Passes per converter: onnx2tf 1.29: 1, onnx2tf 2.6: 1** (strategies ran: onnx2tf 1.29 on 3, onnx2tf 2.6 on 2 cases)." in text
    assert "| pytorch-operator/test_c | pass |  | onnx2tf 2.6 'default' | 1.00e-07 |" in text
    assert "Not available" not in text
