"""LayerNorm eps 1e-12 (configs/layernorm_eps_fp16.yaml): the lint names both LayerNorms, the uncured
TFLite fp16 file outputs NaN on the all-zeros edge case, and the shipped (cured) one has no NaN."""
from __future__ import annotations

import json

import numpy as np
import pytest

from pipeline import inputs as shared_inputs
from pipeline.artifacts.folder import ArtifactDir
from pipeline.artifacts.records import ConvertRecord, ExportRecord
from pipeline.runners.tensorflow import TFLiteRunner
from tests.converters.test_onnx2tf_v2 import needs_side_environment
from tests.support import REPO, Run, run_cli, write_config

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def eps_run(tmp_path_factory, no_network) -> Run:
    out = tmp_path_factory.mktemp("eps") / "out"
    return Run(run_cli("convert", str(REPO / "configs" / "layernorm_eps_fp16.yaml"), "--out", str(out)), out)


def outputs_of(run: Run, file: str) -> np.ndarray:
    artifacts = ArtifactDir(run.root)
    export, convert = artifacts.read(ExportRecord), artifacts.read(ConvertRecord)
    feeds = shared_inputs.feeds(shared_inputs.load_npz(artifacts.inputs))
    with TFLiteRunner(run.root / file, convert.io, export.inputs, export.outputs, "fp16") as runner:
        return np.stack([runner.infer(feed)["output"] for feed in feeds])


def test_lint_names_both_layer_norms(eps_run):
    lint = json.loads((eps_run.root / "lint.json").read_text())
    named = {(f["module"], f["severity"]) for f in lint["findings"] if f["rule"] == "fp16_underflow"}
    assert named == {("norm1", "warning"), ("norm2", "warning")}


def test_uncured_file_is_nan_on_the_zeros_sample_and_the_shipped_one_is_finite(eps_run):
    labels = eps_run.report["sample_labels"]
    zeros = next(i for i, label in enumerate(labels) if "zero" in label)
    uncured = outputs_of(eps_run, "model_float16_uncured.tflite")
    assert not np.isfinite(uncured[zeros]).all()
    assert np.isfinite(outputs_of(eps_run, "model_float16.tflite")).all()


def test_cure_is_recorded_and_the_run_passes(eps_run):
    assert eps_run.exit_code == 0
    cure = json.loads((eps_run.root / "fp16_cure.json").read_text())
    assert cure["shipped"] and {c["module"] for c in cure["changes"]} == {"norm1", "norm2"}
    # raised in the fp16 file itself: one stored zero read by both LayerNorms' ADDs, and no second conversion
    assert cure["method"] == "patched in the fp16 file" and len(cure["patches"]) == 1
    assert len(cure["patches"][0]["readers"]) == 2 and "fp16 cure: converting" not in (eps_run.root / "convert.log").read_text()
    assert cure["before"]["non_finite_samples"] and cure["after"]["non_finite_samples"] == []
    comparisons = {c["candidate"]: c for c in eps_run.report["comparisons"]}
    assert comparisons["tflite_fp16"]["verdict"] == "pass"
    assert cure["after"]["max_abs"] == pytest.approx(comparisons["tflite_fp16"]["max_abs"], rel=1e-3)
    manifest = json.loads((eps_run.root / "manifest.json").read_text())
    assert manifest["tflite"]["fp16_cure"]["shipped"] is True
    assert "## fp16 cure" in (eps_run.root / "report.md").read_text()


def test_tflite_side_lint_finds_the_flushed_epsilons_in_the_uncured_file_only(eps_run):
    from pipeline.lint.context import LintContext
    from pipeline.lint.rules import tflite_fp16_constants

    convert = json.loads((eps_run.root / "convert.json").read_text())
    assert [f for f in convert["tf_lint"]["findings"] if f["rule"] == "tflite_fp16_constants"] == []  # the shipped file
    uncured = {"fp16": eps_run.root / "model_float16_uncured.tflite", "fp32": eps_run.root / "model_float32.tflite"}
    found = list(tflite_fp16_constants.check(LintContext(None, tflite=uncured)))
    assert [(f.severity, f.op_type) for f in found] == [("warning", "ADD"), ("warning", "ADD")]
    assert all("(1e-12 in the float32 file), before RSQRT" in f.message for f in found)


@needs_side_environment
def test_the_cure_keeps_the_converter_that_made_the_file(tmp_path, no_network):
    """A cure made by another converter than the shipped files' would ship that converter's bugs: on ALBERT,
    onnx2tf 1.29's GatherElements error came back in a cured fp16 file beside onnx2tf 2.x's right ones. The
    cure raises the epsilons in 2.x's own fp16 file, and converts nothing else."""
    import yaml
    from ai_edge_litert.interpreter import Interpreter

    from pipeline.config import resolve_source
    from pipeline.convert import stage as convert_stage

    out = tmp_path / "out"
    keys = yaml.safe_load((REPO / "configs" / "layernorm_eps_fp16.yaml").read_text())
    config = str(write_config(tmp_path / "eps.yaml", keys["model"], keys["inputs"], name="eps_relu",
                              model_args={**keys["model_args"], "activation": "relu"}))  # 2.x's SavedModel has no GELU
    for stage in ("export", "validate", "lint"):
        assert run_cli(stage, config, "--out", str(out)) == 0
    record = convert_stage.run(resolve_source(config), ArtifactDir(out), only=[convert_stage.SECOND_CONVERTER])
    assert record.made_by["tflite_fp16"].startswith("onnx2tf 2.")
    assert json.loads((out / "fp16_cure.json").read_text())["method"] == "patched in the fp16 file"
    # both fp16 files are TensorFlow's float16 quantization of a 2.x SavedModel (float32 I/O): the cured one is
    # 2.x's own file with its epsilons raised; the log holds the one onnx2tf 2.x run (the adapter heads each run)
    assert "float16 weights by TensorFlow's TFLite converter" in record.made_by["tflite_fp16"]
    for name in ("model_float16.tflite", "model_float16_uncured.tflite"):
        assert {d["dtype"] for d in Interpreter(model_path=str(out / name)).get_input_details()} == {np.float32}, name
    log = (out / "convert.log").read_text()
    assert log.count("----- onnx2tf 2.") == 1 and "onnx2tf 1.29" not in log
