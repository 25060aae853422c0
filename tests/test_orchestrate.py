"""pipeline/orchestrate.py: re-export with another exporter/opset when every conversion strategy fails."""
from __future__ import annotations

import json

import pytest

from pipeline import orchestrate as fallbacks
from pipeline.artifacts.folder import ArtifactDir
from pipeline.config import resolve_source
from pipeline.errors import ConversionError
from tests.support import run_cli

pytestmark = pytest.mark.slow


@pytest.fixture
def exported(tmp_path, no_network):
    assert run_cli("export", "seed_ym", "--out", str(tmp_path)) == 0
    assert run_cli("validate", "seed_ym", "--out", str(tmp_path)) == 0
    return ArtifactDir(tmp_path)


def test_conversion_failure_on_the_dynamo_export_retries_with_torchscript(exported):
    calls = []

    def run_stage(name):
        calls.append((name, json.loads(exported.stage_record("export").read_text())["exporter"]))
        if name == "convert-tf" and calls[-1][1] == "dynamo":
            raise ConversionError("onnx2tf failed on node 'node_Conv_151' (Conv): simulated; full log: x")

    fallbacks.convert_with_fallbacks(resolve_source("seed_ym"), exported, run_stage, given_onnx=False)
    assert calls == [("convert-tf", "dynamo"), ("validate", "torchscript"), ("lint", "torchscript"), ("convert-tf", "torchscript")]
    record = json.loads(exported.stage_record("export").read_text())
    assert record["exporter"] == "torchscript" and record["opset"] == 17
    assert record["notes"][0].startswith("re-exported with torchscript (opset 17)")


def test_when_everything_fails_the_error_names_node_op_module_and_each_attempt(exported):
    def run_stage(name):
        if name == "convert-tf":
            node = json.loads(exported.stage_record("export").read_text())["exporter"] == "dynamo" and "node_Conv_151" or "/conv/Conv"
            raise ConversionError(f"onnx2tf failed on node '{node}' (Conv): unsupported; full log: x")

    with pytest.raises(ConversionError) as caught:
        fallbacks.convert_with_fallbacks(resolve_source("seed_ym"), exported, run_stage, given_onnx=False)
    message = str(caught.value)
    assert message.startswith("conversion failed with every export and conversion strategy: dynamo opset")
    assert "on node 'node_Conv_151' (Conv, module bn)" in message
    assert "torchscript opset 17: onnx2tf failed on node '/conv/Conv' (Conv, module conv)" in message
