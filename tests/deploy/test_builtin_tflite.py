"""A model with exact GELU whose TFLite files need FlexErf: the builtin-ops route gives files that
run on the standard interpreter and pass the audit; the approximation is named and measured."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from pipeline.converters.tflite_ops import read_ops
from tests.support import Run, run_cli

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def gelu_run(tmp_path_factory, no_network) -> Run:
    folder = tmp_path_factory.mktemp("gelu")
    model = Path(__file__).with_name("gelu_model.py")
    config = folder / "gelu.yaml"
    # TorchScript at opset 17 writes GELU as Div/Erf/Add/Mul: TFLite has no builtin Erf.
    config.write_text(f"name: gelu\nmodel: {model}:build\nexporter: torchscript\nopset: 17\n"
                      "inputs:\n  - {name: x, shape: [1, 3, 16, 16], low: -2, high: 2}\n")
    return Run(run_cli("convert", str(config), "--out", str(folder / "out")), folder / "out")


def test_gelu_tflite_runs_on_the_standard_interpreter_and_passes(gelu_run):
    assert gelu_run.exit_code == 0
    for name in ("model_float32.tflite", "model_float16.tflite"):
        assert read_ops(gelu_run.root / name).standard
        assert read_ops(gelu_run.root / name.replace(".tflite", "_select_tf_ops.tflite")).select_tf == ("FlexErf",)
    comparisons = {c["candidate"]: c for c in gelu_run.report["comparisons"]}
    assert comparisons["tflite_fp32"]["verdict"] == "pass"
    assert comparisons["tflite_fp32"]["max_abs"] == pytest.approx(0.0, abs=1e-5)  # measured 8.6e-7
    assert comparisons["tflite_fp16"]["verdict"] == "pass"


def test_report_and_manifest_name_the_approximation_and_its_error(gelu_run):
    notes = gelu_run.report["notes"]
    assert any(n.startswith("model_float32.tflite: Select TF ops ['FlexErf'] avoided") and "Abramowitz-Stegun" in n for n in notes)
    assert any(n.startswith("model_float32.tflite: runs on the standard interpreter; builtin ops") for n in notes)
    manifest = json.loads((gelu_run.root / "manifest.json").read_text())
    files = manifest["tflite"]["files"]
    assert files["model_float32.tflite"]["standard"] is True
    assert files["model_float32_select_tf_ops.tflite"] == {**files["model_float32_select_tf_ops.tflite"], "standard": False,
                                                           "select_tf_ops": ["FlexErf"]}
    route = manifest["tflite"]["builtin_route"]
    assert route["pseudo_ops"] == ["erf"] and route["no_builtin_route"] == []
    measured = route["measured"]["model_float32.tflite"]
    assert measured["vs_pytorch"]["output"]["max_abs"] == pytest.approx(0.0, abs=1e-5)
    assert measured["vs_tf_saved_model"]["output"]["snr_db"] > 80
    assert "## TFLite operators" in (gelu_run.root / "MODEL_CARD.md").read_text()


def test_convert_json_says_the_builtin_conversion_made_the_swapped_files(gelu_run):
    made_by = json.loads((gelu_run.root / "convert.json").read_text())["made_by"]
    for fmt in ("tflite_fp32", "tflite_fp16"):
        assert "builtin-ops conversion with onnx2tf's builtin replacement ['erf']" in made_by[fmt]
    assert "builtin" not in made_by["tf_saved_model"] and "builtin" not in made_by["keras"]
    assert any(n.startswith("files made by: ") and "builtin-ops conversion" in n for n in gelu_run.report["notes"])
