"""The TF worker: a runner run there gives what it gives here, and a dead worker is one clear error."""
from __future__ import annotations

import numpy as np
import pytest

from pipeline import inputs as shared_inputs
from pipeline.artifacts.folder import ArtifactDir
from pipeline.artifacts.records import ConvertRecord, ExportRecord
from pipeline.config import resolve_source
from pipeline.convert.isolate import Child
from pipeline.errors import RunnerError
from pipeline.runners import remote
from pipeline.runners.factory import make_runner

pytestmark = pytest.mark.slow


@pytest.fixture
def worker(tmp_path):
    child = Child("tensorflow")
    remote.attach(child, tmp_path / remote.LOG)
    yield child
    remote.detach()


def _outputs(runner, feeds):
    with runner:
        return [runner.infer(feed) for feed in feeds]


def test_a_runner_in_the_worker_gives_the_same_arrays_as_here(seed_run, worker):
    artifacts = ArtifactDir(seed_run.root)
    export, convert = artifacts.read(ExportRecord), artifacts.read(ConvertRecord)
    feeds = shared_inputs.feeds(shared_inputs.load_npz(artifacts.inputs))[:2]
    source = resolve_source("seed_ym")
    there = {b: make_runner(b, source, artifacts, export, convert) for b in ("tf_saved_model", "keras", "tflite_fp32")}
    assert isinstance(there["tf_saved_model"], remote.RemoteRunner) and isinstance(there["keras"], remote.RemoteRunner)
    assert not isinstance(there["tflite_fp32"], remote.RemoteRunner), "LiteRT needs no TensorFlow: it runs here"
    results_there = {b: _outputs(r, feeds) for b, r in there.items()}
    remote.detach()
    here = {b: make_runner(b, source, artifacts, export, convert) for b in ("tf_saved_model", "keras")}
    assert not any(isinstance(r, remote.RemoteRunner) for r in here.values())
    for backend, runner in here.items():
        for a, b in zip(results_there[backend], _outputs(runner, feeds)):
            assert a.keys() == b.keys()
            for name in a:
                np.testing.assert_array_equal(a[name], b[name])


def test_a_worker_that_died_is_one_runner_error(seed_run, worker):
    artifacts = ArtifactDir(seed_run.root)
    runner = make_runner("tf_saved_model", resolve_source("seed_ym"), artifacts, artifacts.read(ExportRecord),
                         artifacts.read(ConvertRecord))
    worker._process.kill()  # noqa: SLF001
    worker._process.join(10)  # noqa: SLF001
    with pytest.raises(RunnerError, match="the TensorFlow worker process ended"):
        runner.activate()


def test_a_job_started_in_the_worker_is_answered_when_waited_for(worker):
    waiting = remote.start(divmod, 7, 2)
    assert waiting() == (3, 1)
    assert remote.call(divmod, 9, 4) == (2, 1), "the worker serves the next call as before"


def test_without_a_worker_a_started_job_runs_here():
    remote.detach()
    waiting = remote.start(divmod, 7, 2)
    assert waiting() == (3, 1)


def test_the_audit_runs_the_workers_backends_there_while_it_runs_the_others(seed_run, worker):
    from pipeline.audit import stage as audit

    artifacts = ArtifactDir(seed_run.root)
    export, convert = artifacts.read(ExportRecord), artifacts.read(ConvertRecord)
    feeds = shared_inputs.feeds(shared_inputs.load_npz(artifacts.inputs))[:2]
    sets = [audit.InputSet({}, "the example shape", feeds)]
    source = resolve_source("seed_ym")
    results, broken, waiting = audit._run(["tf_saved_model", "keras", "tflite_fp32"], source, artifacts, export, convert,
                                          sets, {})
    assert set(results[0]) == {"tflite_fp32"} and broken == [{}], "only LiteRT ran here"
    [there], [broken_there] = waiting()
    assert set(there) == {"tf_saved_model", "keras"} and not broken_there
    remote.detach()
    [here], _, nothing = audit._run(["tf_saved_model", "keras"], source, artifacts, export, convert, sets, {})
    assert nothing() == ([{}], [{}])
    for backend in here:
        for name in here[backend]:
            np.testing.assert_array_equal(there[backend][name], here[backend][name])


def test_a_dead_worker_leaves_its_backends_not_run_with_the_reason(seed_run, worker):
    from pipeline.audit import stage as audit

    artifacts = ArtifactDir(seed_run.root)
    export, convert = artifacts.read(ExportRecord), artifacts.read(ConvertRecord)
    feeds = shared_inputs.feeds(shared_inputs.load_npz(artifacts.inputs))[:1]
    worker._process.kill()  # noqa: SLF001
    worker._process.join(10)  # noqa: SLF001
    results, broken, waiting = audit._run(["tf_saved_model", "keras"], resolve_source("seed_ym"), artifacts, export, convert,
                                          [audit.InputSet({}, "the example shape", feeds)], {})
    [there], [broken_there] = waiting()
    assert results == [{}] and there == {}
    assert set(broken_there) == {"tf_saved_model", "keras"}
    assert all("the TensorFlow worker process ended" in why for why in broken_there.values())
