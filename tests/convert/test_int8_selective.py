"""int8 per layer and selective int8, end to end on the two small CNNs of pipeline/zoo/int8_outlier.py,
each calibrated on 64 samples from its input range written into the test's folder."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from ai_edge_litert.interpreter import Interpreter

from pipeline.zoo import int8_outlier
from tests.support import Run, run_cli, write_config

pytestmark = pytest.mark.slow

INPUT = {"name": "x", "shape": list(int8_outlier.SHAPE), "dtype": "float32", "low": -1.0, "high": 1.0}


def _run(folder, builder: str) -> Run:
    int8_outlier.calibration(folder / "calib.npz", samples=64)
    config = write_config(folder / f"int8_{builder}.yaml", f"pipeline.zoo.int8_outlier:{builder}", [INPUT], name=f"int8_{builder}",
                          samples=8, quantize={"int8": {"calibration": "calib.npz", "samples": 64}})
    return Run(run_cli("convert", str(config), "--out", str(folder / "out")), folder / "out")


@pytest.fixture(scope="module")
def healthy(tmp_path_factory, no_network) -> Run:
    return _run(tmp_path_factory.mktemp("int8_healthy"), "healthy")


@pytest.fixture(scope="module")
def outlier(tmp_path_factory, no_network) -> Run:
    return _run(tmp_path_factory.mktemp("int8_outlier"), "outlier")


def _int8(run: Run) -> dict:
    return json.loads((run.root / "int8.json").read_text())


def test_the_outlier_model_computes_the_same_float_function():
    x = torch.rand(4, *int8_outlier.SHAPE[1:]) * 2 - 1
    with torch.no_grad():
        healthy, outlier = int8_outlier.healthy()(x), int8_outlier.outlier()(x)
    assert torch.allclose(healthy, outlier, rtol=1e-4, atol=1e-5 * float(healthy.abs().max()))


def test_a_healthy_int8_gets_its_layer_table_and_no_selective_file(healthy):
    int8 = _int8(healthy)
    assert len(int8["layers"]) == 4  # conv1..conv3 with their ReLUs, and the head
    assert all(layer["onnx_nodes"] and layer["module"] != "unmapped" for layer in int8["layers"])
    assert int8["selective"] is None and int8["float_layers"] == []
    assert not (healthy.root / "model_int8_selective.tflite").exists()
    assert "tflite_int8_selective" not in json.loads((healthy.root / "convert.json").read_text())["models"]
    assert int8["files"]["model_int8.tflite"]["snr_db"] > 30  # measured 34.7 dB on the 8 random samples
    # converted from the SavedModel, so its signature has the config's names too (onnx2tf's own: output_0)
    signature = Interpreter(model_path=str(healthy.root / "model_int8.tflite")).get_signature_list()["serving_default"]
    assert signature == {"inputs": ["x"], "outputs": ["output"]}
    assert "## int8: each quantized layer" in (healthy.root / "report.md").read_text()


def test_the_outlier_layer_is_named_first_and_kept_in_float(outlier):
    int8 = _int8(outlier)
    worst = int8["layers"][0]
    assert worst["module"].startswith("conv2") and worst["onnx_ops"] == ["Conv", "Relu"]
    # Its whole-tensor SNR, dominated by the outlier channel, looks fine; its other channels are lost.
    assert worst["worst_channel_snr_db"] < 5 < 20 < worst["snr_db"]
    assert worst["tensor"] in {layer["tensor"] for layer in int8["float_layers"]}
    assert [layer["module"].split(",")[0] for layer in int8["float_layers"]] == ["conv2", "conv3"]


def test_the_selective_file_is_within_budget_and_audited_like_any_backend(outlier):
    int8 = _int8(outlier)
    before, after = int8["files"]["model_int8.tflite"], int8["files"]["model_int8_selective.tflite"]
    assert before["snr_db"] < 5 and after["snr_db"] >= int8["min_snr_db"] == 15  # measured 1.8 -> 35.4 dB
    assert after["top1_agreement"] > before["top1_agreement"] + 0.3  # measured 0.41 -> 0.97
    assert int8["selective"] == "model_int8_selective.tflite"
    audit = json.loads((outlier.root / "audit.json").read_text())
    selective = [c for c in audit["comparisons"] if c["candidate"] == "tflite_int8_selective"]
    assert selective and all(c["verdict"] == "pass" for c in selective)
    manifest = json.loads((outlier.root / "manifest.json").read_text())
    assert manifest["quantization"]["int8"]["selective"] == "model_int8_selective.tflite"
    assert "| conv2, relu |" in (outlier.root / "report.md").read_text()
    assert '<section id="int8">' in (outlier.root / "report.html").read_text()


def test_the_calibration_file_is_reproducible(tmp_path):
    first = np.load(int8_outlier.calibration(tmp_path / "a.npz"))["x"]
    second = np.load(int8_outlier.calibration(tmp_path / "b.npz"))["x"]
    assert first.shape == (64, *int8_outlier.SHAPE) and np.array_equal(first, second)
    assert first.min() >= -1.0 and first.max() < 1.0
