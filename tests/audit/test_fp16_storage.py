"""The fp16 file judged against the converter's own float32 TFLite file with its constants rounded through
float16 (pipeline/model/fp16_storage.py)."""
from __future__ import annotations

import json

import numpy as np
import pytest

from pipeline import inputs as shared_inputs
from pipeline.artifacts.folder import ArtifactDir
from pipeline.artifacts.records import ConvertRecord, ExportRecord
from pipeline.model.fp16_storage import round_to_float16, stored_as_fp16
from tests.support import run_cli, scale_fp16_weights


def test_values_beyond_float16_are_clamped_as_the_converter_stores_them_and_tiny_ones_flush_or_go_subnormal():
    values = np.array([-1e9, np.finfo(np.float32).min, 1e5, 1e-12, 1e-6, -np.inf], np.float32)
    stored = round_to_float16(values)
    assert stored[:3].tolist() == [-65504.0, -65504.0, 65504.0]
    assert stored[3] == 0.0 and stored[5] == -np.inf
    assert stored[4] != values[4] and abs(stored[4] - values[4]) < 6e-8  # a subnormal: one step is 5.96e-08


def _outputs(root, file, precision):
    from pipeline.runners.tensorflow import TFLiteRunner

    artifacts = ArtifactDir(root)
    export, convert = artifacts.read(ExportRecord), artifacts.read(ConvertRecord)
    feeds = shared_inputs.feeds(shared_inputs.load_npz(artifacts.inputs))
    with TFLiteRunner(file, convert.io, export.inputs, export.outputs, precision) as runner:
        return np.stack([runner.infer(feed)["output"] for feed in feeds])


@pytest.mark.slow
def test_the_float32_file_with_float16_constants_computes_what_the_fp16_file_computes(seed_run, tmp_path):
    stored = tmp_path / "stored.tflite"
    assert stored_as_fp16(seed_run.root / "model_float32.tflite", stored) == 2  # the conv's weights and bias
    reference = _outputs(seed_run.root, stored, "fp32")
    fp16 = _outputs(seed_run.root, seed_run.root / "model_float16.tflite", "fp16")
    fp32 = _outputs(seed_run.root, seed_run.root / "model_float32.tflite", "fp32")
    scale = np.abs(fp32).max()
    assert np.abs(fp16 - reference).max() <= 1e-6 * scale  # float32 rounding at most (bit for bit here)
    assert np.abs(fp16 - fp32).max() > 1e-5 * scale  # what float16 storage itself moves


@pytest.mark.slow
def test_a_correct_fp16_file_passes_and_one_weight_scaled_by_1_02_fails_on_tflite_fp16_alone(seed_copy):
    first = run_cli("audit", "seed_ym", "--out", str(seed_copy))
    assert first == 0
    scale_fp16_weights(seed_copy / "model_float16.tflite", 1.02)
    code = run_cli("audit", "seed_ym", "--out", str(seed_copy))
    audit = json.loads((seed_copy / "audit.json").read_text())
    verdicts = {c["candidate"]: c["verdict"] for c in audit["comparisons"]}
    assert code == 1 and verdicts.pop("tflite_fp16") == "fail"
    assert set(verdicts.values()) == {"pass"}
    fp16 = next(c for c in audit["comparisons"] if c["candidate"] == "tflite_fp16")
    assert fp16["rule"] == "fp16 storage floor" and fp16["snr_db"] > 30  # the old budget would have passed it
    assert audit["fp16_oracle"]["available"] is True and audit["fp16_oracle"]["backend"] == "fp16_storage"


def test_the_rounded_file_is_made_once_per_fp32_file_and_again_when_that_file_changes(tmp_path, monkeypatch):
    from pipeline.model import fp16_storage

    made = []

    def fake_rounding(fp32_tflite, out, cured=False):
        made.append(cured)
        out.write_bytes(fp32_tflite.read_bytes())

    monkeypatch.setattr(fp16_storage, "stored_as_fp16", fake_rounding)
    monkeypatch.setattr(fp16_storage, "_made", {})
    fp32 = tmp_path / "model_float32.tflite"
    fp32.write_bytes(b"first")
    first = fp16_storage.stored_file(fp32)
    assert fp16_storage.stored_file(fp32) == first and made == [False]  # a dynamic model's next shape
    fp16_storage.stored_file(fp32, cured=True)
    fp32.write_bytes(b"rewritten")
    assert fp16_storage.stored_file(fp32).read_bytes() == b"rewritten" and made == [False, True, False]
