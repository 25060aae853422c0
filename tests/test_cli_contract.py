"""What a user sees: results on stdout, diagnostics on stderr, the lint command's flags, and no
lock files or empty folders left behind."""
from __future__ import annotations

import json
import signal
import subprocess
import sys

import pytest

from pipeline import cli
from pipeline.errors import EXIT_INTERRUPTED, EXIT_STAGE_FAILED, RunnerError
from tests.support import REPO, run_cli, swallow_signal


def run(*argv: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "pipeline", *argv], capture_output=True, text=True, cwd=REPO, timeout=900)


@pytest.mark.slow
def test_the_summary_goes_to_stdout_and_progress_to_stderr(seed_copy):
    result = run("report", "seed_ym", "--out", str(seed_copy))
    assert result.returncode == 0
    assert "verdict: PASS" in result.stdout and "TFLite fp16" in result.stdout
    assert "verdict:" not in result.stderr


@pytest.mark.slow
def test_audit_with_layers_alone_says_where_backends_stand(seed_copy, capfd):
    assert run_cli("audit", "seed_ym", "--out", str(seed_copy), "--layers") == 0
    out = capfd.readouterr().out
    assert "where: layer by layer (tensors compared: onnxruntime" in out
    assert "no backend departs beyond the float32 noise floor" in out


@pytest.mark.slow
def test_lint_json_prints_lint_json_on_stdout(seed_copy, capfd):
    assert run_cli("lint", "seed_ym", "--out", str(seed_copy), "--json") == 0
    printed = json.loads(capfd.readouterr().out)
    assert printed == json.loads((seed_copy / "lint.json").read_text())
    assert printed["passed"] is True


@pytest.mark.slow
def test_lint_of_a_config_alone_exports_first_and_says_so(tmp_path):
    out = tmp_path / "art"
    result = run("lint", "seed_ym", "--out", str(out))  # a process of its own: the console's stderr is its own
    assert result.returncode == 0, result.stderr
    err = " ".join(result.stderr.split())  # the console wraps long lines
    assert "yet: exporting it first (the 'export' stage)" in err
    assert (out / "model.onnx").exists() and (out / "lint.json").exists()


def test_no_lock_file_and_no_empty_folder_are_left_behind(tmp_path, capfd):
    out = tmp_path / "never"
    assert run_cli("validate", "seed_ym", "--out", str(out)) == 3  # nothing exported: fails at once
    assert "run the 'export' stage first" in capfd.readouterr().err
    assert not out.exists()
    assert not list(tmp_path.glob(".*.lock"))


def test_default_artifacts_go_to_the_repositorys_artifacts_folder():
    from pipeline.artifacts.folder import DEFAULT_ROOT, REPO_ROOT, ArtifactDir

    assert (REPO_ROOT / "pyproject.toml").is_file() and DEFAULT_ROOT == REPO_ROOT / "artifacts"
    assert ArtifactDir.for_model("seed_ym", None).root == (REPO_ROOT / "artifacts" / "seed_ym").resolve()


def _signal_then(error: Exception, number: int = signal.SIGTERM):
    """A command during which a signal arrives, a library swallows its KeyboardInterrupt, and then
    `error` surfaces (as a child killed mid-answer would raise while the run stops)."""
    def dispatch(args):
        swallow_signal(number)
        raise error
    return dispatch


def _raising(error: Exception):
    def dispatch(args):
        raise error
    return dispatch


@pytest.mark.parametrize("number", [signal.SIGTERM, signal.SIGINT])
@pytest.mark.parametrize("error", [RuntimeError("pipe closed"), BrokenPipeError(32, "Broken pipe"),
                                   RunnerError("the TensorFlow worker process ended")])
def test_an_error_raised_after_a_signal_ends_the_run_as_interrupted(monkeypatch, capsys, error, number):
    monkeypatch.setattr(cli, "_dispatch", _signal_then(error, number))
    assert run_cli("lint", "seed_ym") == EXIT_INTERRUPTED
    lines = capsys.readouterr().err.strip().splitlines()
    assert lines[0].startswith("note: while stopping: ")
    assert lines[-1] == "interrupted: nothing was committed from this run; earlier artifacts are intact"


def test_an_earlier_runs_signal_does_not_make_the_next_run_interrupted(monkeypatch, capsys):
    monkeypatch.setattr(cli, "_dispatch", _signal_then(RunnerError("x")))
    assert run_cli("lint", "seed_ym") == EXIT_INTERRUPTED
    monkeypatch.setattr(cli, "_dispatch", _raising(RunnerError("the backend could not run")))
    assert run_cli("lint", "seed_ym") == EXIT_STAGE_FAILED
    assert capsys.readouterr().err.strip().splitlines()[-1] == "error: the backend could not run"


def test_the_cli_starts_without_torch_or_tensorflow():
    """A full run starts its conversion child (TensorFlow's import) before it imports torch for the export."""
    code = "import sys, pipeline.cli; print(sorted({'torch', 'tensorflow', 'onnxruntime'} & set(sys.modules)))"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, timeout=120)
    assert result.stdout.strip() == "[]", result.stderr[-2000:]
