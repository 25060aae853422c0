"""verify: hashes re-checked, shipped models rerun from the saved inputs; a changed byte is named."""
from __future__ import annotations

from pathlib import Path

import pytest

from pipeline.deploy.verify import verify
from pipeline.errors import ArtifactError
from tests.support import run_cli


def test_verify_needs_a_manifest(tmp_path):
    with pytest.raises(ArtifactError, match="manifest.json: missing"):
        verify(tmp_path)


def test_verify_on_a_missing_folder_is_a_usage_error(tmp_path, capsys):
    assert run_cli("verify", str(tmp_path / "nope")) == 2
    assert "not a folder" in capsys.readouterr().err


def _flip_one_byte(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01
    path.write_bytes(bytes(data))


@pytest.mark.slow
def test_verify_passes_on_a_fresh_run(seed_run, capsys):
    assert run_cli("verify", str(seed_run.root)) == 0
    out = capsys.readouterr().out
    assert "verify: every file and every shipped model holds" in out
    result = verify(seed_run.root)
    assert result.passed and not result.changed
    assert {c.backend for c in result.checks} == {"onnxruntime", "tf_saved_model", "keras", "tflite_fp32", "tflite_fp16"}
    assert all(c.verdict == "pass" for c in result.checks)
    fp32 = next(c for c in result.checks if c.backend == "tflite_fp32")
    assert fp32.max_abs["output"] == pytest.approx(0.0, abs=1e-4)


@pytest.mark.slow
@pytest.mark.parametrize("name", ["model.onnx", "model_float32.tflite", "model_float16.tflite"])
def test_verify_fails_naming_the_file_after_one_byte_changes(seed_copy, capsys, name):
    _flip_one_byte(seed_copy / name)
    assert run_cli("verify", str(seed_copy)) == 1
    out = capsys.readouterr().out
    assert f"CHANGED {name}: sha256 differs" in out
    assert "verify: FAILED" in out
    result = verify(seed_copy)
    assert [line.split(":")[0] for line in result.changed] == [name]
    assert [c.backend for c in result.checks if c.verdict == "fail"] == [
        {"model.onnx": "onnxruntime", "model_float32.tflite": "tflite_fp32", "model_float16.tflite": "tflite_fp16"}[name]]


@pytest.mark.slow
def test_verify_fails_when_the_saved_reference_outputs_change(seed_copy):
    _flip_one_byte(seed_copy / "outputs" / "pytorch.npz")
    result = verify(seed_copy)
    assert not result.passed
    assert result.changed[0].startswith("outputs/pytorch.npz: sha256 differs")
    assert all(c.verdict == "fail" for c in result.checks)


@pytest.mark.slow
def test_a_hand_edited_manifest_is_named(seed_copy):
    import json

    manifest = json.loads((seed_copy / "manifest.json").read_text())
    _flip_one_byte(seed_copy / "model.onnx")
    from pipeline.artifacts.folder import sha256

    entry = next(e for e in manifest["artifacts"] if e["path"] == "model.onnx")
    entry["sha256"] = sha256(seed_copy / "model.onnx")  # the hash made to match the changed file
    (seed_copy / "manifest.json").write_text(json.dumps(manifest))
    result = verify(seed_copy)
    assert not result.passed
    assert result.changed == ["manifest.json: its content does not match its digest (edited after the run)"]
