"""Every mistake a user can make gets one clear line on stderr, a documented exit code and no
traceback; failed, interrupted and concurrent runs never destroy the last good artifacts.

Each row of CASES: an id, a function that prepares files in tmp_path and returns the CLI
arguments, the exit code, and the exact line (a regular expression) the user reads.
"""
from __future__ import annotations

import errno
import hashlib
import json
import os
import pickle
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from onnx import TensorProto, helper, numpy_helper

from pipeline.artifacts import folder as artifacts_module
from pipeline.artifacts.guard import locked
from tests.support import REPO, run_cli

NET = '''
import torch

class Net(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = torch.nn.Conv2d(3, 4, 3, padding=1)

    def forward(self, x):
        return self.conv(x)

def build():
    torch.manual_seed(0)
    return Net()

def boom():
    raise RuntimeError("boom")

def number():
    return 3

def eig():
    class Eig(torch.nn.Module):
        def forward(self, x):
            return torch.linalg.eigvals(x).real
    return Eig()
'''
INPUTS = "inputs:\n  - name: x\n    shape: [1, 3, 8, 8]\n"


class Opaque:
    """A pickled Python object: weights_only=True refuses it."""


def write(tmp: Path, name: str, text: str) -> Path:
    (tmp / "net.py").write_text(NET)
    path = tmp / name
    path.write_text(text)
    return path


def cfg(tmp: Path, text: str = "model: net.py:build\n" + INPUTS) -> list[str]:
    return ["export", str(write(tmp, "cfg.yaml", text)), "--out", str(tmp / "out")]


def checkpoint(tmp: Path, state) -> list[str]:
    torch.save(state, tmp / "ckpt.pt")
    return cfg(tmp, "model: net.py:build\ncheckpoint: ckpt.pt\n" + INPUTS)


def onnx_file(tmp: Path, opset: int = 17, external: str | None = None) -> Path:
    weight = numpy_helper.from_array(np.ones((2, 2), np.float32), "w")
    graph = helper.make_graph([helper.make_node("MatMul", ["x", "w"], ["y"], name="mm")], "g",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 2])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 2])], [weight])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    if external:
        tensor = model.graph.initializer[0]
        tensor.ClearField("raw_data")
        tensor.data_location = TensorProto.EXTERNAL
        tensor.external_data.add(key="location", value=external)
    path = tmp / "model.onnx"
    path.write_bytes(model.SerializeToString())
    return path


def truncated(tmp: Path) -> list[str]:
    data = onnx_file(tmp).read_bytes()
    (tmp / "cut.onnx").write_bytes(data[: len(data) // 2])
    return ["convert", str(tmp / "cut.onnx"), "--out", str(tmp / "out")]


def renamed(tmp: Path) -> list[str]:
    (tmp / "photo.onnx").write_bytes(os.urandom(4096))
    return ["convert", str(tmp / "photo.onnx"), "--out", str(tmp / "out")]


CASES = [
    ("config file missing", lambda t: ["convert", str(t / "nope.yaml")], 2,
     r"error: .*nope\.yaml: config file not found; check the path"),
    ("unknown config name", lambda t: ["convert", "sed_ym"], 2,
     r"error: MODEL=sed_ym: not a config name, a \.yaml file or an \.onnx file; did you mean 'seed_ym'\?"),
    ("YAML syntax error", lambda t: cfg(t, "model: net.py:build\ninputs:\n  - name: [x\n"), 2,
     r"error: .*cfg\.yaml:4: YAML syntax error: .*; fix the YAML at that line"),
    ("unknown key", lambda t: cfg(t, "model: net.py:build\ninptus:\n  - name: x\n    shape: [1]\n"), 2,
     r"error: .*cfg\.yaml: unknown key 'inptus'; did you mean 'inputs'\?"),
    ("misspelt nested key", lambda t: cfg(t, "model: net.py:build\ninputs:\n  - name: x\n    shpe: [1]\n"), 2,
     r"error: .*cfg\.yaml: unknown key 'inputs\[0\]\.shpe'; did you mean 'shape'\?"),
    ("wrong type", lambda t: cfg(t, "model: net.py:build\nsamples: many\n" + INPUTS), 2,
     r"error: .*cfg\.yaml: key 'samples': Input should be a valid integer.*\(got 'many'\)"),
    ("missing inputs", lambda t: cfg(t, "model: net.py:build\n"), 2,
     r"error: .*cfg\.yaml: missing required key 'inputs'; see configs/seed_ym\.yaml for an example"),
    ("model not importable", lambda t: cfg(t, "model: no_such_pkg.models:build\n" + INPUTS), 2,
     r"error: .*cfg\.yaml: key 'model': cannot import 'no_such_pkg\.models' \(No module named 'no_such_pkg'\); check the module path"),
    ("factory raises", lambda t: cfg(t, "model: net.py:boom\n" + INPUTS), 2,
     r"error: .*cfg\.yaml: model factory 'net\.py:boom' raised RuntimeError: boom"),
    ("factory returns no module", lambda t: cfg(t, "model: net.py:number\n" + INPUTS), 2,
     r"error: .*cfg\.yaml: model factory 'net\.py:number' returned int, not a torch\.nn\.Module; make it return the model instance"),
    ("checkpoint missing", lambda t: cfg(t, "model: net.py:build\ncheckpoint: gone.pt\n" + INPUTS), 2,
     r"error: .*cfg\.yaml: key 'checkpoint': file .*gone\.pt not found"),
    ("checkpoint keys differ", lambda t: checkpoint(t, {"conv.weight": torch.zeros(4, 3, 3, 3), "head.bias": torch.zeros(2)}), 2,
     r"error: .*ckpt\.pt: checkpoint keys do not match the model: missing \['conv\.bias'\], unexpected \['head\.bias'\]; "
     r"check that the checkpoint belongs to this model"),
    ("checkpoint refused by weights_only", lambda t: checkpoint(t, {"conv.weight": Opaque()}), 2,
     r"error: .*ckpt\.pt: torch\.load\(weights_only=True\) refused the checkpoint \(.*\): it holds Python objects, not only "
     r"tensors; .*set 'unsafe_checkpoint: true' in the config \(unpickling can run arbitrary code\)"),
    ("input shape the model rejects", lambda t: cfg(t, "model: net.py:build\ninputs:\n  - name: x\n    shape: [1, 5, 8, 8]\n"), 2,
     r"error: .*cfg\.yaml: the model rejects the configured inputs \(x\[1, 5, 8, 8\]\): RuntimeError: .*; fix 'inputs' in the config"),
    ("op no exporter handles", lambda t: cfg(t, "model: net.py:eig\ninputs:\n  - name: x\n    shape: [1, 4, 4]\n"), 3,
     r"error: every exporter failed \(dynamo: .*\[unsupported op: aten::linalg_eig\]; torchscript: UnsupportedOperatorError: "
     r".*\[unsupported op: aten::linalg_eigvals\]\); full log: .*export\.failed\.log"),
    ("truncated ONNX file", truncated, 2, r"error: .*cut\.onnx: not a readable ONNX model \(\w+\); check that the file is complete"),
    ("random file renamed .onnx", renamed, 2, r"error: .*photo\.onnx: not a readable ONNX model \(\w+\); check that the file is complete"),
    ("external data outside the folder", lambda t: ["convert", str(onnx_file(t, external="../../etc/passwd"))], 2,
     r"error: .*model\.onnx: initializer 'w' points to external data outside the model's folder \('\.\./\.\./etc/passwd'\); "
     r"refused: move the data next to the model"),
    ("opset too new", lambda t: ["convert", str(onnx_file(t, opset=99)), "--out", str(t / "out")], 2,
     r"error: .*model\.onnx: opset 99 is newer than this onnx .* supports \(\d+\); export with opset <= \d+"),
    ("output folder under a file", lambda t: ["export", "seed_ym", "--out", str(write(t, "f.txt", "x") / "sub")], 2,
     r"error: .*f\.txt/sub: cannot create the output folder \(Not a directory\); choose another --out"),
]


@pytest.mark.parametrize("case, make_args, code, message", CASES, ids=[c[0] for c in CASES])
def test_bad_input_gives_one_clear_line(case, make_args, code, message, tmp_path, capsys):
    assert run_cli(*make_args(tmp_path)) == code
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    assert "Traceback" not in err[0]
    assert __import__("re").fullmatch(message, err[0]), err[0]


def test_debug_shows_the_traceback(tmp_path):
    with pytest.raises(Exception, match="config file not found"):
        run_cli("convert", str(tmp_path / "nope.yaml"), "--debug")


def test_output_folder_not_writable(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(artifacts_module.os, "access", lambda path, mode: False)
    assert run_cli("export", "seed_ym", "--out", str(tmp_path / "ro")) == 2
    assert capsys.readouterr().err.strip() == (
        f"error: {tmp_path / 'ro'}: output folder is not writable; choose another --out or fix its permissions")


def test_a_second_run_on_the_same_folder_is_refused(tmp_path, capsys):
    with locked(tmp_path / "out"):
        assert run_cli("export", "seed_ym", "--out", str(tmp_path / "out")) == 5
    assert capsys.readouterr().err.strip() == (
        f"error: {tmp_path / 'out'}: another run (pid {os.getpid()}) is writing this artifact folder; "
        "wait for it to finish or pass another --out")


# --- needs a converted model ---------------------------------------------------------------

def _digests(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.mark.slow
@pytest.mark.parametrize("arrays, message", [
    ({"y": np.zeros((1, 3, 64, 64), np.float32)}, r"--inputs .*: keys must be the model's inputs \['x'\]; missing \['x'\], extra \['y'\]"),
    ({"x": np.zeros((1, 3, 64, 64), np.float32), "z": np.zeros(1)}, r"--inputs .*: keys .*; missing \[\], extra \['z'\]"),
    ({"x": np.zeros((1, 3, 32, 32), np.float32)}, r"--inputs .*: 'x' has shape \[1, 3, 32, 32\]; expected \[1, 3, 64, 64\] or \[samples, 1, 3, 64, 64\]"),
    ({"x": np.zeros((1, 3, 64, 64), np.float64)}, r"--inputs .*: 'x' has dtype float64, the config says float32; cast it with \.astype\('float32'\)"),
], ids=["missing key", "extra key", "wrong shape", "wrong dtype"])
def test_bad_inputs_npz(seed_copy, tmp_path, arrays, message, capsys):
    np.savez(tmp_path / "real.npz", **arrays)
    before = _digests(seed_copy)
    assert run_cli("audit", "seed_ym", "--out", str(seed_copy), "--inputs", str(tmp_path / "real.npz")) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and __import__("re").fullmatch("error: " + message, err[0]), err
    assert _digests(seed_copy) == before


@pytest.mark.slow
def test_disk_full_while_writing_keeps_the_last_good_artifacts(seed_copy, monkeypatch, capsys, no_network):
    before = _digests(seed_copy)
    real = artifacts_module.write_json

    def full_disk(path, payload):
        if path.name == "audit.json":
            raise OSError(errno.ENOSPC, "No space left on device", str(path))
        real(path, payload)

    monkeypatch.setattr("pipeline.audit.stage.write_json", full_disk)
    assert run_cli("convert", "seed_ym", "--out", str(seed_copy)) == 3
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: disk full while writing (") and err.endswith("free some space and rerun: earlier artifacts are intact")
    assert _digests(seed_copy) == before
    assert not list(seed_copy.parent.glob(".seed_ym.run-*"))


def _kill(process: subprocess.Popen) -> None:
    """SIGTERM as `kill PID` sends it: to the run's own process only."""
    process.send_signal(signal.SIGTERM)


def _ctrl_c(process: subprocess.Popen) -> None:
    """SIGINT as Ctrl-C in a terminal sends it: to every process of the foreground group, the run's helpers too."""
    os.killpg(process.pid, signal.SIGINT)


def _group_is_gone(group: int, seconds: float = 10.0) -> bool:
    deadline = time.time() + seconds
    while time.time() < deadline:
        try:
            os.killpg(group, 0)
        except ProcessLookupError:
            return True
        time.sleep(0.2)
    return False


@pytest.mark.slow
@pytest.mark.parametrize("interrupt", [_kill, _ctrl_c], ids=["sigterm", "sigint-to-the-group"])
def test_an_interrupt_mid_conversion_leaves_the_previous_artifacts_intact(seed_copy, interrupt):
    before = _digests(seed_copy)
    # in a session of its own, as a shell starts a job: its process group is the run and its helpers
    process = subprocess.Popen([sys.executable, "-m", "pipeline", "convert", "seed_ym", "--out", str(seed_copy)],
                               cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
    deadline = time.time() + 120
    # The first conversion's log appears in its head-start folder when it starts, right after the export.
    while time.time() < deadline and not list(seed_copy.parent.glob(".seed_ym.run-*/.convert-head-start/convert.log")):
        time.sleep(0.2)
    assert process.poll() is None, "the run ended before conversion started"
    interrupt(process)
    _, err = process.communicate(timeout=120)
    assert process.returncode == 130, err[-3000:]
    assert err.strip().splitlines()[-1] == "interrupted: nothing was committed from this run; earlier artifacts are intact"
    assert "Traceback" not in err, err[-3000:]  # not the run's, nor a helper's
    assert _digests(seed_copy) == before
    assert not list(seed_copy.parent.glob(".seed_ym.run-*"))
    assert _group_is_gone(process.pid), "a helper process of the run outlived it"


@pytest.mark.slow
def test_same_config_and_seed_give_identical_inputs_and_numbers(seed_run, tmp_path, no_network):
    assert run_cli("convert", "seed_ym", "--out", str(tmp_path / "again")) == 0
    assert (tmp_path / "again" / "inputs.npz").read_bytes() == (seed_run.root / "inputs.npz").read_bytes()
    first, second = seed_run.report, json.loads((tmp_path / "again" / "report.json").read_text())
    assert first["comparisons"] == second["comparisons"]
    assert first["histograms"] == second["histograms"]


@pytest.mark.slow
def test_nan_outputs_are_reported_never_a_pass(tmp_path, no_network):
    (tmp_path / "nan.py").write_text(
        "import torch\nclass N(torch.nn.Module):\n    def forward(self, x):\n        return torch.sqrt(-torch.abs(x) - 1.0)\n"
        "def build():\n    return N()\n")
    (tmp_path / "nan.yaml").write_text("model: nan.py:build\ninputs:\n  - name: x\n    shape: [1, 8]\n")
    code = run_cli("convert", str(tmp_path / "nan.yaml"), "--out", str(tmp_path / "out"))
    assert code == 4
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    assert report["verdict"] == "inconclusive"
    assert any("reference output holds NaN or Inf" in r for r in report["verdict_reasons"])


@pytest.mark.slow
def test_keras_files_load_in_safe_mode(tmp_path):
    import tf_keras

    from pipeline.errors import RunnerError
    from pipeline.inputs import TensorSpec
    from pipeline.runners.layout import AS_IS
    from pipeline.runners.tensorflow import KerasRunner
    from pipeline.runners.tf_io import TensorBinding, TFModelIO

    inputs = tf_keras.Input((2,), name="x")
    model = tf_keras.Model(inputs, tf_keras.layers.Lambda(lambda v: v * 2)(inputs))
    model.save(str(tmp_path / "lambda.keras"))
    io = TFModelIO([TensorBinding("x", "x", 0, AS_IS)], [TensorBinding("y", "y", 0, AS_IS)])
    runner = KerasRunner(tmp_path / "lambda.keras", io, [TensorSpec("x", (1, 2), "float32")], ["y"])
    with pytest.raises(RunnerError, match="keras: could not load the model .*(safe_mode|unsafe|Lambda)"):
        runner.activate()


def test_a_killed_runs_leftover_folder_is_cleaned_by_the_next_run(tmp_path):
    from pipeline.artifacts.folder import ArtifactDir
    from pipeline.artifacts.guard import fresh_folder

    final = ArtifactDir(tmp_path / "seed_ym")
    final.root.mkdir()
    (final.root / "report.json").write_text("{}")
    leftover = tmp_path / ".seed_ym.run-99999999"
    leftover.mkdir()
    (leftover / "model.onnx").write_text("half")
    with locked(final.root), fresh_folder(final) as work:
        (work.root / "report.json").write_text('{"new": true}')
    assert not leftover.exists()
    assert (final.root / "report.json").read_text() == '{"new": true}'
