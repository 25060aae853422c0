"""--resume: only models without a complete run of the same config and versions run again."""
import json
import signal
import subprocess
import sys
import time

import psutil
import pytest

from pipeline.batch.resume import completed, stack_versions, write_marker
from pipeline.batch.result import TIMEOUT, TaskResult
from pipeline.batch.run import BatchRequest, run_batch
from tests.batch import fakes
from tests.batch.support import specs_for, write_config
from tests.support import REPO, run_cli


def _resumed(root):
    return {r["model"]: r["resumed"] for r in json.loads((root / "batch.json").read_text())["results"]}


def test_a_resumed_batch_runs_only_the_missing_models(tmp_path):
    paths = [str(write_config(tmp_path / "cfg", name)) for name in ("a", "b", "c")]
    root = tmp_path / "batch"
    assert run_batch(BatchRequest(tuple(paths[:2]), jobs=2, out=root), task=fakes.fake_task) == 0
    assert run_batch(BatchRequest(tuple(paths), jobs=2, out=root, resume=True), task=fakes.fake_task) == 0
    assert sorted(fakes.calls(root)) == ["a", "b", "c"]  # a and b ran once
    assert _resumed(root) == {"a": True, "b": True, "c": False}


def test_without_resume_everything_runs_again(tmp_path):
    paths = (str(write_config(tmp_path / "cfg", "a")),)
    root = tmp_path / "batch"
    run_batch(BatchRequest(paths, jobs=1, out=root), task=fakes.fake_task)
    run_batch(BatchRequest(paths, jobs=1, out=root), task=fakes.fake_task)
    assert fakes.calls(root) == ["a", "a"]


@pytest.fixture
def finished(tmp_path):
    """A spec whose folder holds a complete (stand-in) run and its marker."""
    (spec,) = specs_for([write_config(tmp_path / "cfg", "m")], tmp_path / "batch")
    write_marker(spec, fakes.fake_task(spec), stack_versions())
    return spec


def test_a_complete_run_is_recognised(finished):
    assert completed(finished, stack_versions()).verdict == "pass"


def test_another_stack_version_runs_again(finished):
    assert completed(finished, {**stack_versions(), "tensorflow": "0.0.1"}) is None


def test_an_edited_config_runs_again(finished):
    finished.model.path.write_text(finished.model.path.read_text().replace("low: -0.5", "low: -0.4"))
    (spec,) = specs_for([finished.model.path], finished.root)
    assert completed(spec, stack_versions()) is None


def test_a_later_run_into_the_folder_invalidates_the_marker(finished):
    fakes.write_report(finished.artifacts, verdict="fail")
    assert completed(finished, stack_versions()) is None


def test_a_run_without_a_report_leaves_no_marker(tmp_path):
    (spec,) = specs_for([write_config(tmp_path / "cfg", "m")], tmp_path / "batch")
    fakes.write_report(spec.artifacts)  # an older run's report is there, this one timed out
    write_marker(spec, TaskResult(model="m", arg="m", verdict=TIMEOUT, reason="", exit_code=-15, seconds=1.0),
                 stack_versions())
    assert completed(spec, stack_versions()) is None


def _wait_for(path, process, seconds):
    deadline = time.monotonic() + seconds
    while not path.exists():
        assert process.poll() is None, process.communicate()[1][-2000:]
        assert time.monotonic() < deadline, f"{path} never appeared"
        time.sleep(0.2)


GATED_MODEL = """
import pathlib
import time

from pipeline.zoo.seed import build as build_seed

GATE = pathlib.Path({gate!r})


def build():
    \"\"\"seed_ym's model once the gate is open; until then the run waits here, in its export, and says so.\"\"\"
    (GATE.parent / "waiting").touch()
    while not GATE.exists():
        time.sleep(0.1)
    return build_seed()
"""


def _gated_config(folder, name):
    """A copy of seed_ym whose model is built only once the test creates `<folder>/gate`: the run is
    provably mid-way (in its export) for as long as the test wants, however fast or busy the machine."""
    path = write_config(folder, name)
    (folder / "gated.py").write_text(GATED_MODEL.format(gate=str(folder / "gate")))
    path.write_text(path.read_text().replace("model: pipeline.zoo.seed:build", "model: gated.py:build"))
    return path


@pytest.mark.slow
def test_resume_after_an_interrupt_finishes_only_the_missing_model(tmp_path):
    """The interrupt comes while 'second' waits at its gate, after 'first' finished: the test decides when, not
    the machine's speed (it used to interrupt once 'second' was converting, which a fast run could outrun)."""
    first = str(write_config(tmp_path / "cfg", "first"))
    second = str(_gated_config(tmp_path / "gated", "second"))
    root = tmp_path / "batch"
    batch = subprocess.Popen([sys.executable, "-m", "pipeline", "batch", first, second, "--jobs", "1", "--out", str(root)],
                             cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    _wait_for(root / "first" / "batch.done.json", batch, 600)
    _wait_for(tmp_path / "gated" / "waiting", batch, 600)  # 'second' is running, and cannot finish
    batch.send_signal(signal.SIGTERM)
    assert batch.wait(120) == 130, batch.communicate()[1][-2000:]
    interrupted = json.loads((root / "batch.json").read_text())
    assert interrupted["interrupted"] and [r["model"] for r in interrupted["results"]] == ["first"]
    assert not (root / "second" / "report.json").exists()
    assert not [p for p in psutil.process_iter(["cmdline"]) if str(root / "second") in " ".join(p.info["cmdline"] or [])]
    first_report = (root / "first" / "report.json").stat().st_mtime_ns

    (tmp_path / "gated" / "gate").touch()
    assert run_cli("batch", first, second, "--jobs", "1", "--out", str(root), "--resume") == 0
    assert (root / "first" / "report.json").stat().st_mtime_ns == first_report
    assert _resumed(root) == {"first": True, "second": False}
    assert json.loads((root / "second" / "report.json").read_text())["verdict"] == "pass"
