"""The Ray executor on a real local Ray instance (ray.init(num_cpus=2)), no mocks."""
import os

import pytest
import ray

from pipeline.batch.executors import RayExecutor
from pipeline.batch.result import CRASHED, WORKER_LOST
from tests.batch import fakes
from tests.batch.conftest import SMALL
from tests.batch.support import specs_for, write_config
from tests.support import run_cli


@pytest.fixture(scope="module")
def ray_instance():
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")  # no usage report leaves the machine
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()


@pytest.fixture
def specs(tmp_path):
    return specs_for([write_config(tmp_path / "cfg", name) for name in ("a", "b")], tmp_path / "batch")


def _run(task, specs):
    results = []
    RayExecutor(2).run(task, specs, results.append)
    return {r.model: r for r in results}


def test_ray_tasks_return_the_task_results(ray_instance, specs):
    results = _run(fakes.fake_task, specs)
    assert {name: r.verdict for name, r in results.items()} == {"a": "pass", "b": "pass"}
    assert ray.is_initialized()  # a running instance is joined, not shut down


def test_ray_retries_a_lost_worker_once(ray_instance, specs):
    results = _run(fakes.dies_once, specs[:1])
    assert results["a"].verdict == "pass"
    assert (specs[0].root / "a.died").exists()  # the first attempt's worker did die


def test_a_worker_lost_twice_is_recorded(ray_instance, specs):
    results = _run(fakes.always_dies, specs[:1])
    assert results["a"].verdict == WORKER_LOST and "WorkerCrashedError" in results["a"].reason


def test_a_raising_task_is_recorded(ray_instance, specs):
    assert _run(fakes.raises, specs[:1])["a"].verdict == CRASHED


@pytest.mark.slow
def test_ray_batch_gives_the_local_verdicts(ray_instance, local_batch, tmp_path):
    code = run_cli("batch", *SMALL, "--executor", "ray", "--jobs", "2", "--out", str(tmp_path / "out"))
    from tests.batch.conftest import BatchRun

    ray_run = BatchRun(code, tmp_path / "out")
    assert ray_run.batch["executor"] == "ray"
    assert {n: r["verdict"] for n, r in ray_run.results.items()} == {n: local_batch.results[n]["verdict"] for n in SMALL}
    assert code == 0
    assert all((ray_run.root / r["report_html"]).is_file() for r in ray_run.results.values())


def test_a_task_bigger_than_the_cluster_is_refused_before_it_waits_forever(ray_instance, tmp_path):
    from pipeline.errors import UsageError

    (spec,) = specs_for([write_config(tmp_path / "cfg", "huge")], tmp_path / "batch")
    huge = type(spec)(spec.model, spec.root, spec.timeout_s, None, memory_request_bytes=10**15)
    with pytest.raises(UsageError, match=r"huge \(.* GB\) asks for more memory than the Ray cluster has"):
        RayExecutor(2).run(fakes.fake_task, [huge], lambda r: None)
