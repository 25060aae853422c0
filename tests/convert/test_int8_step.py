"""The convert stage's int8 step around the analysis: when it runs, which samples it measures on, and what a
failed analysis leaves (a note; model_int8.tflite stands). The analysis itself: test_int8_selective.py."""
from __future__ import annotations

import dataclasses
import types
from pathlib import Path

import numpy as np
import pytest

from pipeline import inputs as shared_inputs
from pipeline.artifacts.folder import ArtifactDir, write_json
from pipeline.artifacts.records import ConvertRecord, ExportRecord
from pipeline.convert import int8_layers, int8_step
from pipeline.converters import ConversionResult
from pipeline.converters.base import Int8Request
from pipeline.inputs import TensorSpec
from pipeline.runners.layout import Layout
from pipeline.runners.tf_io import TensorBinding, TFModelIO

SPEC = TensorSpec("x", (1, 3, 4, 4), "float32", -1.0, 1.0)
CHANNEL_LAST = Layout((0, 2, 3, 1), "test")


def _step(tmp_path: Path, mode: str = "full_integer", models: dict | None = None) -> int8_step.Int8Step:
    artifacts = ArtifactDir(tmp_path)
    samples = shared_inputs.with_edge_cases(shared_inputs.generate([SPEC], 5, seed=0), [SPEC])
    shared_inputs.save_npz(artifacts.inputs, samples)
    np.savez(tmp_path / "calibration.npz", x=np.ones((2, *SPEC.shape), np.float32))
    write_json(artifacts.stage_record("export"), ExportRecord("pytorch", "m", "torchscript", [], 17, [SPEC], ["y"], "pytorch", 0))
    io = TFModelIO([TensorBinding("x", "x", 0, CHANNEL_LAST)], [])
    record = ConvertRecord("onnx2tf", "1", {}, 0.0, "default", [], models or {"tf_saved_model": "saved_model",
                           "tflite_int8": "model_int8.tflite"}, io, [], None, [])
    result = ConversionResult(tmp_path / "saved_model", None, {}, [], [], "onnx2tf", "1")
    request = Int8Request(tmp_path / "calibration.npz", mode, samples=2, origin="2 samples")
    return int8_step.Int8Step(types.SimpleNamespace(config=None), artifacts, tmp_path, request, result, record)


def test_nothing_happens_without_a_full_integer_int8_file(tmp_path, monkeypatch):
    monkeypatch.setattr(int8_layers, "analyse", pytest.fail)
    for step in (_step(tmp_path, mode="dynamic_range"), _step(tmp_path, models={"tf_saved_model": "saved_model"})):
        assert int8_step.run(step) is step.record
    assert not (tmp_path / "int8.json").exists()


def test_the_analysis_gets_random_samples_only_in_the_tf_layout_and_the_default_budget(tmp_path, monkeypatch):
    seen = {}

    def analyse(saved_model, calibration, evaluation, min_snr_db, path):
        seen.update(calibration=calibration, evaluation=evaluation, budget=min_snr_db)
        raise RuntimeError("stop here\nsecond line")

    monkeypatch.setattr(int8_layers, "analyse", analyse)
    step = _step(tmp_path)
    record = int8_step.run(step)
    assert len(seen["evaluation"]) == 5  # the 3 edge cases are left out
    assert seen["evaluation"][0]["x"].shape == (1, 4, 4, 3) and len(seen["calibration"]) == 2
    assert seen["budget"] == 15.0  # judge.DEFAULT_BUDGETS
    randoms = shared_inputs.load_npz(step.artifacts.inputs)["x"][:5]
    assert np.array_equal(np.stack([f["x"] for f in seen["evaluation"]]), np.transpose(randoms, (0, 1, 3, 4, 2)))
    assert record.notes == ["int8 per layer not measured (RuntimeError: stop here): no layer table and no selective "
                            "int8 file; model_int8.tflite is audited as it is"]
    assert record.models == step.record.models and not (tmp_path / "int8.json").exists()


def test_the_configs_int8_budget_is_the_one_aimed_at(tmp_path, monkeypatch):
    from pipeline.config import PrecisionBudgetConfig

    seen = {}

    def analyse(saved_model, calibration, evaluation, min_snr_db, path):
        seen["budget"] = min_snr_db
        raise RuntimeError("stop")

    monkeypatch.setattr(int8_layers, "analyse", analyse)
    step = _step(tmp_path)
    config = types.SimpleNamespace(precision_budget={"int8": PrecisionBudgetConfig(min_snr_db=25.0)})
    int8_step.run(dataclasses.replace(step, source=types.SimpleNamespace(config=config)))
    assert seen["budget"] == 25.0
