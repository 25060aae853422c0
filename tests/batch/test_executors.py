"""The local executor with stand-in tasks: results arrive, a lost worker is retried once, a raising
task is recorded. (The real pipeline on both executors: test_end_to_end.py and test_ray.py.)"""
import pytest

from pipeline.batch.executors import LocalExecutor, make_executor
from pipeline.batch.result import CRASHED, WORKER_LOST
from pipeline.errors import UsageError
from tests.batch import fakes
from tests.batch.support import specs_for, write_config


@pytest.fixture
def specs(tmp_path):
    paths = [write_config(tmp_path / "cfg", name) for name in ("a", "b", "c")]
    return specs_for(paths, tmp_path / "batch")


def _run(executor, task, specs):
    results = []
    executor.run(task, specs, results.append)
    return {r.model: r for r in results}


def test_every_model_gets_a_result(specs):
    results = _run(LocalExecutor(2), fakes.fake_task, specs)
    assert sorted(results) == ["a", "b", "c"]
    assert all(r.verdict == "pass" and r.attempts == 1 for r in results.values())
    assert results["a"].report_html == "a/report.html"


def test_a_lost_worker_is_retried_once(specs):
    results = _run(LocalExecutor(2), fakes.dies_once, specs[:1])
    assert results["a"].verdict == "pass" and results["a"].attempts == 2


def test_a_worker_lost_twice_is_recorded_and_the_rest_completes(specs):
    results = _run(LocalExecutor(1), fakes.always_dies, specs[:1])
    assert results["a"].verdict == WORKER_LOST and "died 2 times (BrokenProcessPool)" in results["a"].reason
    assert _run(LocalExecutor(1), fakes.fake_task, specs[1:])["b"].verdict == "pass"


def test_a_raising_task_is_recorded(specs):
    results = _run(LocalExecutor(2), fakes.raises, specs[:2])
    assert {r.verdict for r in results.values()} == {CRASHED}
    assert "RuntimeError: a bug in the task" in results["a"].reason


def test_address_needs_ray():
    with pytest.raises(UsageError, match="--address is for --executor ray"):
        make_executor("local", 1, "10.0.0.1:6379")


def test_without_ray_the_error_says_how_to_install_it(monkeypatch):
    monkeypatch.setitem(__import__("sys").modules, "ray", None)  # what an environment without Ray looks like
    with pytest.raises(UsageError, match="needs Ray.*requirements-batch.txt"):
        make_executor("ray", 2, None)
