"""manifest.json and MODEL_CARD.md: unit checks on a tiny folder, and the seed_ym run."""
from __future__ import annotations

import json

import pytest

from pipeline.artifacts.folder import sha256
from pipeline.deploy.manifest import file_format, files
from tests.support import REPO


def test_files_lists_every_shipped_file_sorted_and_skips_logs_and_hidden(tmp_path):
    (tmp_path / "saved_model" / "variables").mkdir(parents=True)
    (tmp_path / "saved_model" / "variables" / "variables.index").write_bytes(b"ix")
    (tmp_path / "model.onnx").write_bytes(b"onnx")
    (tmp_path / "convert.log").write_text("log")
    (tmp_path / ".staging-x").mkdir()
    (tmp_path / ".staging-x" / "a").write_text("a")
    (tmp_path / "manifest.json").write_text("{}")
    listed = files(tmp_path)
    assert [e["path"] for e in listed] == ["model.onnx", "saved_model/variables/variables.index"]
    assert listed[0] == {"path": "model.onnx", "format": "onnx", "size": 4, "sha256": sha256(tmp_path / "model.onnx")}


@pytest.mark.parametrize("path, fmt", [
    ("model_float32.tflite", "tflite"), ("model.keras", "keras_v3"), ("layers.keras", "layers_keras"),
    ("outputs/pytorch.npz", "reference_outputs"), ("outputs/keras.npz", "outputs"), ("audit.json", "record"),
    ("saved_model/saved_model.pb", "tf_saved_model"), ("model_float32.h5", "keras_h5"),
])
def test_file_format(path, fmt):
    assert file_format(path) == fmt


@pytest.mark.slow
def test_seed_manifest_lists_models_signature_versions_and_verdict(seed_run):
    manifest = json.loads((seed_run.root / "manifest.json").read_text())
    by_backend = {m["backend"]: m for m in manifest["models"]}
    assert set(by_backend) == {"onnxruntime", "tf_saved_model", "keras", "tflite_fp32", "tflite_fp16"}
    assert by_backend["tflite_fp32"]["sha256"] == sha256(seed_run.root / "model_float32.tflite")
    assert by_backend["tf_saved_model"]["sha256"] == sha256(seed_run.root / "saved_model")
    assert all(m["verdict"] == "pass" and m["shipped"] and m["errors"] == [] for m in manifest["models"])
    assert manifest["signature"]["inputs"] == [{
        "name": "x", "shape": [1, 3, 64, 64], "dtype": "float32", "tf_name": "x", "tf_shape": [1, 64, 64, 3],
        "layout": "channel-last", "layout_decided_by": "shape"}]
    assert manifest["signature"]["outputs"][0]["shape"] == [1, 32, 32, 32]
    assert set(manifest["versions"]) == {"torch", "onnx", "onnxruntime", "tensorflow", "ai-edge-litert", "onnx2tf"}
    assert all(manifest["versions"].values())
    assert manifest["source"]["sha256"] == sha256(REPO / "configs" / "seed_ym.yaml")
    assert manifest["lint"] == {"passed": True, "counts": {"error": 0, "warning": 0, "info": 0}}
    assert manifest["verdict"]["overall"] == "pass"
    listed = {e["path"]: e for e in manifest["artifacts"]}
    assert {"model.onnx", "inputs.npz", "outputs/pytorch.npz", "MODEL_CARD.md", "saved_model/saved_model.pb"} <= set(listed)
    assert not any(path.endswith(".log") or path == "manifest.json" for path in listed)
    assert all(sha256(seed_run.root / path) == entry["sha256"] for path, entry in listed.items())


@pytest.mark.slow
def test_seed_model_card_names_each_model_and_the_verdict(seed_run):
    card = (seed_run.root / "MODEL_CARD.md").read_text()
    assert "**Verdict: PASS**" in card
    for name in ("model.onnx", "model.keras", "model_float32.tflite", "model_float16.tflite", "saved_model"):
        assert f"`{name}`" in card
    assert "| input | `x` | [1, 3, 64, 64] | float32 | `x` | [1, 64, 64, 3] | channel-last |" in card


def test_backend_verdict_of_candidates_and_of_the_reference():
    from pipeline.deploy.manifest import backend_verdict

    audit = {"reference": "pytorch", "comparisons": [
        {"reference": "pytorch", "candidate": "tflite_fp16", "output": "y", "passed": False, "verdict": "fail", "reason": "SNR 12 dB"},
        {"reference": "pytorch", "candidate": "keras", "output": "y", "passed": True, "verdict": "pass", "reason": None}]}
    assert backend_verdict(audit, "keras") == {"verdict": "pass", "errors": [], "shipped": True}
    assert backend_verdict(audit, "tflite_fp16") == {"verdict": "fail", "errors": ["'y': SNR 12 dB"], "shipped": False}
    assert backend_verdict({**audit, "reference": "onnxruntime"}, "onnxruntime")["verdict"] == "reference"
    assert backend_verdict(audit, "tflite_int8_integer_io")["shipped"] is False


def test_a_failing_measured_section_is_recorded_not_fatal():
    from pipeline.deploy.manifest import _best_effort

    def broken():
        raise RuntimeError("flatbuffer unreadable\nmore")

    assert _best_effort(broken) == {"error": "RuntimeError: flatbuffer unreadable"}


def test_the_digest_covers_everything_but_itself(tmp_path):
    from pipeline.deploy.manifest import digest, load, write

    (tmp_path / "model.onnx").write_bytes(b"onnx")
    written = write(tmp_path, None, {"model": "m", "snr": float("inf")})
    assert load(tmp_path)["digest"] == written["digest"] == digest(written)
    assert written["snr"] is None  # strict JSON, and the digest is of what was written
    assert digest({**written, "model": "other"}) != written["digest"]
