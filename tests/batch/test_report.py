import json

from pipeline.batch.report import BatchSummary, write_reports
from pipeline.batch.result import OUT_OF_MEMORY, BackendWorst, TaskResult
from pipeline.batch.run import batch_exit_code


def _result(model, verdict, **extra):
    return TaskResult(model=model, arg=f"{model}.yaml", verdict=verdict, reason="why" if verdict != "pass" else "",
                      exit_code=0, seconds=10.0, **extra)


RESULTS = (
    _result("a", "pass", backends=(BackendWorst("keras", 1e-6, 0.5),), timings={"export": 2.0, "convert": 5.0},
            report_html="a/report.html", peak_rss_mb=900.0, lint_errors=0, strategy="default"),
    _result("b", "fail", timings={"export": 1.0, "convert": 9.0}, report_html="b/report.html"),
    _result("c", "inconclusive"),
    _result("d", OUT_OF_MEMORY),
)


def test_summary_counts_rate_and_slowest_stages():
    summary = BatchSummary("local", 2, 36.0, RESULTS, resumed=frozenset({"a"}))
    assert summary.counts == {"pass": 1, "fail": 1, "inconclusive": 1, "crashed": 1}
    assert summary.failures == {OUT_OF_MEMORY: 1}
    assert summary.models_per_hour == 300.0  # 3 models run (a was resumed) in 36 s
    slowest = summary.slowest_stages()
    assert [s["stage"] for s in slowest] == ["convert", "export"]
    assert slowest[0]["slowest_model"] == "b"


def test_report_files(tmp_path):
    paths = write_reports(BatchSummary("ray", 2, 60.0, RESULTS), tmp_path)
    payload = json.loads(paths["json"].read_text())
    assert [r["model"] for r in payload["results"]] == ["a", "b", "c", "d"]
    assert payload["results"][0]["backends"][0]["noise_ratio"] == 0.5
    assert payload["executor"] == "ray"
    markdown = paths["md"].read_text()
    assert "[report](a/report.html)" in markdown and "**d** (out of memory): why" in markdown
    page = paths["html"].read_text()
    assert 'href="a/report.html"' in page and "data:image/png;base64," in page
    assert "http://" not in page and "https://" not in page  # self-contained


def test_exit_code_fail_beats_crash_beats_inconclusive():
    assert batch_exit_code(RESULTS) == 1
    assert batch_exit_code(RESULTS[2:]) == 3
    assert batch_exit_code(RESULTS[:1] + RESULTS[2:3]) == 4
    assert batch_exit_code(RESULTS[:1]) == 0
