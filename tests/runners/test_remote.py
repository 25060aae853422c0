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
