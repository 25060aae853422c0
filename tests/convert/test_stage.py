"""The convert stage: a failed conversion leaves the last good artifacts intact."""
from __future__ import annotations

import pytest

from pipeline.convert import stage as convert
from pipeline.artifacts.folder import sha256
from pipeline.converters.base import ConversionOptions
from pipeline.errors import ConversionError
from tests.support import run_cli

pytestmark = pytest.mark.slow


class _BrokenConverter:
    name = "broken"
    label = "broken"

    def version(self) -> str:
        return "0"

    def available(self) -> str | None:
        return None

    def convert(self, onnx_path, out_dir, log_path, options: ConversionOptions):
        (out_dir / "saved_model").mkdir()
        (out_dir / "saved_model" / "saved_model.pb").write_bytes(b"half-written")
        log_path.write_text("converter log before the failure\n")
        raise ConversionError(f"onnx2tf failed on node 'n' (Foo): boom; full log: {log_path}")


def test_failed_conversion_keeps_previous_artifacts(seed_copy, monkeypatch, capsys):
    before = {name: sha256(seed_copy / name) for name in ("saved_model", "model.keras", "model_float32.tflite", "convert.json")}
    monkeypatch.setattr(convert, "get_converter", lambda name="onnx2tf": _BrokenConverter())
    assert run_cli("convert-tf", "seed_ym", "--out", str(seed_copy)) == 3
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1
    assert err[0].startswith("error: every conversion strategy failed (default, no-onnxsim, keep-nchw-inputs, "
                             "auto-replacement-json, rewrite-function-ops, onnx2tf-2); the cause: onnx2tf failed on node 'n' (Foo): "
                             "boom; no other converter than broken 0 was tried; try another exporter or opset in the config")
    assert err[0].endswith("convert.failed.log")
    kept = (seed_copy / "convert.failed.log").read_text()
    assert kept.startswith("\n########## convert-tf on dynamo export, opset ") and kept.endswith("converter log before the failure\n")
    after = {name: sha256(seed_copy / name) for name in before}
    assert after == before
    assert not list(seed_copy.glob(".staging-*"))


class _NeedsNoOnnxsim:
    """Fails like onnx2tf unless onnxsim is off, then delegates to the real converter."""

    name = "picky"
    label = "picky"

    def __init__(self, real):
        self.real = real

    def version(self) -> str:
        return self.real.version()

    def available(self) -> str | None:
        return None

    def convert(self, onnx_path, out_dir, log_path, options: ConversionOptions):
        if options.use_onnxsim:
            raise ConversionError(f"onnx2tf failed on node 'node_Conv_151' (Conv): simulated; full log: {log_path}")
        return self.real.convert(onnx_path, out_dir, log_path, options)


def test_a_later_strategy_is_used_and_recorded(seed_copy, monkeypatch, no_network):
    from pipeline.converters import get_converter

    real = get_converter()
    monkeypatch.setattr(convert, "get_converter", lambda name="onnx2tf": _NeedsNoOnnxsim(real))
    assert run_cli("convert-tf", "seed_ym", "--out", str(seed_copy)) == 0
    record = (seed_copy / "convert.json").read_text()
    import json

    record = json.loads(record)
    assert record["strategy"] == "no-onnxsim"
    assert [(a["strategy"], a["ok"]) for a in record["attempts"]] == [("default", False), ("no-onnxsim", True)]
    assert "simulated" in record["attempts"][0]["error"]
    assert not (seed_copy / "default").exists()  # the failed attempt's folder is not shipped
    assert run_cli("audit", "seed_ym", "--out", str(seed_copy)) == 0  # a fallback never hides a wrong model: the audit decides


class _RunsAwayOnDefault:
    """Grows without bound under the default strategy (as onnx2tf did on light_vgg19), else converts."""

    name = "greedy"
    label = "greedy"

    def __init__(self, real):
        self.real = real

    def version(self) -> str:
        return self.real.version()

    def available(self) -> str | None:
        return None

    def convert(self, onnx_path, out_dir, log_path, options: ConversionOptions):
        if options.use_onnxsim and not options.keep_nchw_inputs and not options.auto_replacement:
            from tests.convert.test_isolate import grow_forever

            grow_forever()
        return self.real.convert(onnx_path, out_dir, log_path, options)


def test_an_attempt_that_runs_out_of_memory_is_stopped_recorded_and_the_next_strategy_runs(seed_copy, monkeypatch, no_network):
    from pipeline.convert.isolate import Limits
    from pipeline.converters import get_converter

    real = get_converter()
    monkeypatch.setattr(convert, "get_converter", lambda name="onnx2tf": _RunsAwayOnDefault(real))
    monkeypatch.setattr(convert, "limits_for", lambda source: Limits(4 * 2**30, 600))
    assert run_cli("convert-tf", "seed_ym", "--out", str(seed_copy)) == 0
    import json

    record = json.loads((seed_copy / "convert.json").read_text())
    assert record["strategy"] == "no-onnxsim"
    default = record["attempts"][0]
    assert default["strategy"] == "default" and default["ok"] is False
    assert "stopped at" in default["error"] and "over the memory limit" in default["error"]
