"""End to end through the CLI: real exports and onnx2tf conversions, offline."""
from __future__ import annotations

import io
import json
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import numpy_helper

from tests.support import REPO, NetworkBlocked, run_cli

pytestmark = pytest.mark.slow

FP32_BACKENDS = {"onnxruntime", "tf_saved_model", "keras", "tflite_fp32"}


def test_network_is_really_blocked(no_network):
    with pytest.raises(NetworkBlocked):
        socket.create_connection(("example.com", 443), timeout=1)
    import requests

    with pytest.raises(Exception, match="network access attempted"):
        requests.get("https://github.com", timeout=1)


def test_seed_ym_passes_on_every_backend(seed_run):
    assert seed_run.exit_code == 0
    report = seed_run.report
    assert report["verdict"] == "pass"
    assert report["reference"] == "pytorch"
    assert report["exporter"] == "dynamo"
    candidates = {c["candidate"] for c in report["comparisons"]}
    assert candidates == FP32_BACKENDS | {"tflite_fp16"}
    for comparison in report["comparisons"]:
        assert comparison["passed"], comparison
        if comparison["candidate"] in FP32_BACKENDS:
            assert comparison["max_abs"] < 1e-4
        assert comparison["cosine"] > 0.999
        assert comparison["ref_max_abs"] > 0.1  # the outputs carry signal


def test_report_json_has_the_documented_fields(seed_run):
    report = seed_run.report
    for key in ("model", "verdict", "backends", "exporter", "comparisons", "artifacts", "timings", "versions"):
        assert key in report
    comparison = report["comparisons"][0]
    for key in ("reference", "candidate", "output", "max_abs", "mean_abs", "max_rel", "cosine", "atol", "rtol", "passed"):
        assert key in comparison
    formats = {a["format"] for a in report["artifacts"]}
    assert {"onnx", "tf_saved_model", "keras", "tflite_fp32", "tflite_fp16", "inputs"} <= formats
    assert all(len(a["sha256"]) == 64 for a in report["artifacts"])
    assert set(report["timings"]) == {"export", "validate", "lint", "convert", "audit"}
    assert report["versions"]["onnx2tf"].startswith("1.")
    assert report["samples"] >= 4


def test_artifacts_are_all_written(seed_run):
    for name in ("model.onnx", "saved_model/saved_model.pb", "model.keras", "model_float32.tflite",
                 "model_float16.tflite", "inputs.npz", "report.json", "report.md", "convert.log",
                 "outputs/pytorch.npz", "outputs/tflite_fp16.npz"):
        assert (seed_run.root / name).exists(), name
    assert not list(seed_run.root.glob(".staging-*"))
    for record in ("lint.json", "convert.json"):  # where the ONNX file is once the run is over, not its working folder
        onnx = json.loads((seed_run.root / record).read_text())["onnx" if record == "lint.json" else "tf_lint"]
        assert Path(onnx if isinstance(onnx, str) else onnx["onnx"]) == seed_run.root / "model.onnx", record
    assert "onnx2tf" in (seed_run.root / "convert.log").read_text() or (seed_run.root / "convert.log").stat().st_size > 0


def test_samples_are_distinct_and_saved(seed_run):
    with np.load(seed_run.root / "inputs.npz") as inputs:
        x = inputs["x"]
    assert x.shape == (4 + 3, 1, 3, 64, 64)  # 4 seeded samples, then zeros, a constant and the largest magnitude
    assert not np.allclose(x[0], x[1])
    assert x.min() >= -0.5 and x.max() < 0.5
    assert np.all(x[4] == 0) and np.all(x[5] == x[5].flat[0]) and np.all(x[6] == -0.5)
    assert seed_run.report["sample_labels"] == ["random_0", "random_1", "random_2", "random_3", "zeros", "constant", "max_magnitude"]


def test_report_md_holds_the_table(seed_run):
    text = (seed_run.root / "report.md").read_text()
    assert "**Verdict: PASS**" in text
    assert "| TFLite fp16 | output |" in text
    assert "## Lint" in text


def test_convert_runs_lint_with_no_errors_on_the_seed_model(seed_run):
    lint = seed_run.report["lint"]
    assert lint["counts"]["error"] == 0
    assert (seed_run.root / "lint.json").exists()


def test_lint_error_fails_the_verdict_even_when_numbers_agree(seed_copy, no_network):
    """An epsilon error the audit cannot see (ONNX Runtime and TF share the wrong ONNX file) still fails."""
    model = onnx.load(str(seed_copy / "model.onnx"))
    conv = next(node for node in model.graph.node if node.op_type == "Conv")
    for attribute in conv.attribute:
        if attribute.name == "pads":
            attribute.ints[:] = [0, 0, 1, 1]
    onnx.save(model, str(seed_copy / "model.onnx"))
    assert run_cli("lint", "seed_ym", "--out", str(seed_copy)) == 1
    lint = json.loads((seed_copy / "lint.json").read_text())
    errors = [f for f in lint["findings"] if f["severity"] == "error"]
    assert [(f["rule"], f["node"], f["module"]) for f in errors] == [("pads", conv.name, "conv")]
    assert run_cli("report", "seed_ym", "--out", str(seed_copy)) == 1
    assert json.loads((seed_copy / "report.json").read_text())["verdict"] == "fail"


def test_report_stage_reruns_alone_with_the_same_numbers(seed_copy):
    before = json.loads((seed_copy / "report.json").read_text())
    (seed_copy / "report.json").unlink()
    assert run_cli("report", "seed_ym", "--out", str(seed_copy)) == 0
    after = json.loads((seed_copy / "report.json").read_text())
    assert after["comparisons"] == before["comparisons"]


def test_tampered_onnx_fails_the_audit_and_the_report_follows(seed_copy, no_network, capfd, monkeypatch):
    from rich.console import Console

    from pipeline import orchestrate

    progress = io.StringIO()  # the terminal's progress lines (they bypass pytest's capture)
    monkeypatch.setattr(orchestrate, "console", Console(file=progress, width=400))
    assert json.loads((seed_copy / "report.json").read_text())["verdict"] == "pass"
    model = onnx.load(str(seed_copy / "model.onnx"))
    bias = next(init for init in model.graph.initializer if init.dims == [32])  # the folded BatchNorm bias
    bias.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(bias) + np.float32(0.05), bias.name))
    onnx.save(model, str(seed_copy / "model.onnx"))
    assert run_cli("validate", "seed_ym", "--out", str(seed_copy)) == 1
    assert "report.json, report.md and report.html are stale" in progress.getvalue()
    assert run_cli("convert-tf", "seed_ym", "--out", str(seed_copy)) == 0
    assert f"refresh them with: python -m pipeline audit seed_ym --out {seed_copy}" in progress.getvalue()
    progress.truncate(0)
    assert run_cli("audit", "seed_ym", "--out", str(seed_copy)) == 1
    audit = json.loads((seed_copy / "audit.json").read_text())
    assert audit["verdict"] == "fail"
    assert all(not c["passed"] for c in audit["comparisons"] if c["candidate"] in FP32_BACKENDS)
    # run alone, the audit re-renders the report the earlier run left: it no longer shows the old verdict
    printed = capfd.readouterr()
    report = json.loads((seed_copy / "report.json").read_text())
    assert report["verdict"] == "fail" and report["comparisons"] == audit["comparisons"]
    assert "verdict: FAIL" in printed.out and "stale" not in progress.getvalue()
    assert "audit: re-rendering report.json, report.md and report.html" in progress.getvalue()
    assert "FAIL" in (seed_copy / "report.md").read_text()


@pytest.mark.parametrize("case", ["test_Conv2d_strided", "test_BatchNorm2d_eval"])
def test_onnx_route_on_old_opset_backend_test_data(case, onnx_test_data, tmp_path, no_network):
    model = onnx_test_data / "pytorch-converted" / case / "model.onnx"
    assert run_cli("convert", str(model), "--out", str(tmp_path)) == 0
    report = json.loads((tmp_path / "report.json").read_text())
    assert report["reference"] == "onnxruntime" and report["route"] == "onnx"
    assert any("upgraded from opset 6" in note for note in report["notes"])
    assert report["verdict"] == "pass"
    assert report["oracle"]["available"] and report["oracle"]["rejected"] is None  # the float64 graph passed its check


def test_config_outside_configs_with_model_file_next_to_it(tmp_path, no_network):
    folder = tmp_path / "some" / "dir"
    folder.mkdir(parents=True)
    (folder / "net.py").write_text(
        "import torch\n"
        "class Net(torch.nn.Module):\n"
        "    def __init__(self):\n"
        "        super().__init__()\n"
        "        self.conv = torch.nn.Conv2d(3, 4, 3, stride=2, padding=1)\n"
        "    def forward(self, x):\n"
        "        return torch.tanh(self.conv(x))\n"
        "def make():\n"
        "    torch.manual_seed(0)\n"
        "    return Net()\n"
    )
    (folder / "cfg.yaml").write_text("model: net.py:make\ninputs:\n  - name: x\n    shape: [1, 3, 16, 16]\n")
    out = tmp_path / "out"
    assert run_cli("convert", str(folder / "cfg.yaml"), "--out", str(out)) == 0
    assert json.loads((out / "report.json").read_text())["model"] == "cfg"


def test_cli_help_documents_exit_codes():
    result = subprocess.run([sys.executable, "-m", "pipeline", "convert", "--help"], capture_output=True, text=True, cwd=REPO)
    assert result.returncode == 0
    assert "exit codes" in result.stdout and "130" in result.stdout
