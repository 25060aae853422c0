"""A config's `artifacts` picks the files a conversion writes; what is not written is neither
audited nor shipped, and what is written is always audited."""
from __future__ import annotations

import json

import pytest

from pipeline.config import load_config
from pipeline.errors import ConfigError
from tests.support import run_cli, write_config

TINY = "pipeline.zoo.seed:build"
INPUTS = [{"name": "input", "shape": [1, 3, 16, 16]}]


def test_the_savedmodel_cannot_be_left_out(tmp_path):
    path = write_config(tmp_path / "m.yaml", TINY, INPUTS, artifacts=["tflite_fp32"])
    with pytest.raises(ConfigError, match="must list saved_model"):
        load_config(path)


def test_an_unknown_artifact_is_named_with_the_known_ones(tmp_path):
    path = write_config(tmp_path / "m.yaml", TINY, INPUTS, artifacts=["saved_model", "onnx"])
    with pytest.raises(ConfigError, match="artifacts"):
        load_config(path)


@pytest.mark.slow
def test_only_the_asked_files_are_written_audited_and_shipped(tmp_path, no_network):
    path = write_config(tmp_path / "m.yaml", TINY, INPUTS, name="few", artifacts=["saved_model", "tflite_fp16"])
    out = tmp_path / "out"
    assert run_cli("convert", str(path), "--out", str(out)) == 0
    convert = json.loads((out / "convert.json").read_text())
    assert set(convert["models"]) == {"tf_saved_model", "tflite_fp16"}
    assert not (out / "model.keras").exists() and not (out / "model_float32.tflite").exists()
    assert any("not written, as the config's `artifacts` asks: keras, tflite_fp32" in n for n in convert["notes"])
    audit = json.loads((out / "audit.json").read_text())
    assert {c["candidate"] for c in audit["comparisons"]} == {"onnxruntime", "tf_saved_model", "tflite_fp16"}
    manifest = json.loads((out / "manifest.json").read_text())
    shipped = {f["path"] for f in manifest["artifacts"]}
    assert "model_float16.tflite" in shipped and "model.keras" not in shipped
