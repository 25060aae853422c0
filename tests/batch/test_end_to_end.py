"""A real batch on the local executor: verdicts, a task killed by its memory limit, the zoo report."""
import json

import pytest

from pipeline.batch.result import OUT_OF_MEMORY
from tests.batch.conftest import SMALL

pytestmark = pytest.mark.slow


def test_the_starved_model_is_reported_with_its_reason_and_the_rest_completes(local_batch):
    results = local_batch.results
    assert sorted(results) == sorted([*SMALL, "starved"])
    assert results["starved"]["verdict"] == OUT_OF_MEMORY
    assert "memory limit" in results["starved"]["reason"]
    assert all(results[name]["verdict"] == "pass" for name in SMALL)
    assert local_batch.exit_code == 3  # no audit failed, one model has no report


def test_each_result_matches_its_models_own_report(local_batch):
    for name in SMALL:
        result = local_batch.results[name]
        report = json.loads((local_batch.root / name / "report.json").read_text())
        assert result["verdict"] == report["verdict"]
        assert result["strategy"] == report["conversion"]["strategy"]
        assert result["lint_errors"] == report["lint"]["counts"]["error"]
        assert set(result["timings"]) == set(report["timings"])
        candidates = {c["candidate"] for c in report["comparisons"]}
        assert {b["backend"] for b in result["backends"]} == candidates
        worst = max(c["max_abs"] for c in report["comparisons"] if c["candidate"] == "tflite_fp16")
        assert next(b for b in result["backends"] if b["backend"] == "tflite_fp16")["max_abs"] == worst
        assert result["peak_rss_mb"] > 100


def test_zoo_report_files(local_batch):
    batch = local_batch.batch
    assert batch["counts"] == {"pass": 3, "fail": 0, "inconclusive": 0, "crashed": 1}
    assert batch["models_per_hour"] > 0
    assert {s["stage"] for s in batch["slowest_stages"]} >= {"export", "convert", "audit"}
    page = (local_batch.root / "batch.html").read_text()
    for name in SMALL:
        link = local_batch.results[name]["report_html"]
        assert (local_batch.root / link).is_file() and f'href="{link}"' in page
    assert "https://" not in page and "http://" not in page
    assert "starved" in (local_batch.root / "batch.md").read_text()


def test_finished_models_get_a_resume_marker_and_the_killed_one_does_not(local_batch):
    assert all((local_batch.root / name / "batch.done.json").is_file() for name in SMALL)
    assert not (local_batch.root / "starved" / "batch.done.json").exists()
