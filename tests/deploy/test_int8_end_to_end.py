"""seed_ym with a calibration npz: model_int8.tflite (and its integer-I/O variant), audited by its
precision budget, with SNR and agreement against PyTorch and TFLite fp32 in the manifest."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from pipeline.deploy.verify import verify
from tests.support import REPO, Run, run_cli

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def int8_run(tmp_path_factory, no_network) -> Run:
    folder = tmp_path_factory.mktemp("seed_int8")
    rng = np.random.default_rng(7)
    np.savez(folder / "calib.npz", x=rng.uniform(-0.5, 0.5, (16, 1, 3, 64, 64)).astype(np.float32))
    seed = (REPO / "configs" / "seed_ym.yaml").read_text().replace("name: seed_ym", "name: seed_int8")
    config = folder / "seed_int8.yaml"
    config.write_text(seed + "quantize:\n  int8: {calibration: calib.npz, samples: 16, integer_io: true}\n")
    code = run_cli("convert", str(config), "--out", str(folder / "out"))
    return Run(code, folder / "out")


def test_int8_tflite_is_made_and_audited_with_snr(int8_run):
    assert int8_run.exit_code == 0
    assert (int8_run.root / "model_int8.tflite").exists()
    assert (int8_run.root / "model_int8_integer_io.tflite").exists()
    convert = json.loads((int8_run.root / "convert.json").read_text())
    assert convert["models"]["tflite_int8"] == "model_int8.tflite"
    audit = json.loads((int8_run.root / "audit.json").read_text())
    for backend in ("tflite_int8", "tflite_int8_integer_io"):
        int8 = next(c for c in audit["comparisons"] if c["candidate"] == backend and c["reference"] == "pytorch")
        assert int8["verdict"] == "pass"
        assert int8["rule"] == "precision budget"
        assert int8["snr_db"] > 30  # measured 44.7 dB
        assert int8["max_abs"] == pytest.approx(0.0, abs=0.05)  # measured 7.5e-3; output scale 1.17


def test_manifest_holds_int8_cost_against_pytorch_and_fp32(int8_run):
    manifest = json.loads((int8_run.root / "manifest.json").read_text())
    int8 = manifest["quantization"]["int8"]
    assert int8["mode"] == "full_integer" and int8["samples"] == 16 and int8["integer_io"] is True
    assert int8["origin"].startswith("16 samples from calib.npz")
    for file in ("model_int8.tflite", "model_int8_integer_io.tflite"):
        entry = int8["files"][file]
        for against in ("vs_reference", "vs_tflite_fp32"):
            m = entry[against]["output"]
            assert m["snr_db"] > 30
            assert m["top1_agreement"] > 0.9 and m["top5_agreement"] > 0.99
    assert not any(a["path"] == "calibration.npz" for a in manifest["artifacts"])
    card = (int8_run.root / "MODEL_CARD.md").read_text()
    assert "int8 full_integer, calibrated on 16 samples from calib.npz" in card


def test_verify_reruns_the_int8_model(int8_run):
    result = verify(int8_run.root)
    assert result.passed
    verdicts = {c.backend: c.verdict for c in result.checks}
    assert verdicts["tflite_int8"] == verdicts["tflite_int8_integer_io"] == "pass"


def test_without_calibration_no_int8_is_made_and_the_report_says_so(seed_run):
    assert not (seed_run.root / "model_int8.tflite").exists()
    manifest = json.loads((seed_run.root / "manifest.json").read_text())
    assert manifest["quantization"]["int8"] is None
    assert "no calibration data" in manifest["quantization"]["note"]
    assert any("no int8 TFLite: no calibration data" in note for note in seed_run.report["notes"])
