"""Stage 2, validate: onnx full check, strict shape inference, ONNX Runtime vs PyTorch.

Writes validate.json and the reference outputs (outputs/pytorch.npz,
outputs/onnxruntime.npz) that later stages reuse instead of rerunning.
"""
from __future__ import annotations

import time

import onnx

from pipeline import inputs as shared_inputs
from pipeline.artifacts.folder import ArtifactDir, sha256, write_json
from pipeline.artifacts.records import ExportRecord, ValidateRecord
from pipeline.runners.factory import make_runner
from pipeline.compare import compare, evidence_problem, run_all, tolerance_for
from pipeline.config import Source
from pipeline.errors import ValidationError, first_line


def run(source: Source, artifacts: ArtifactDir) -> ValidateRecord:
    """Check model.onnx, run it in ONNX Runtime and (PyTorch route) compare with PyTorch."""
    start = time.perf_counter()
    onnx_path = artifacts.require(artifacts.onnx, "export")
    export = artifacts.read(ExportRecord)
    check_model(onnx_path)
    samples = shared_inputs.load_npz(artifacts.require(artifacts.inputs, "export"))
    backends = ["pytorch", "onnxruntime"] if export.route == "pytorch" else ["onnxruntime"]
    runners = [make_runner(b, source, artifacts, export) for b in backends]
    results = run_all(runners, shared_inputs.feeds(samples))
    comparisons = compare(results, "pytorch", ["onnxruntime"]) if "pytorch" in results else []
    reference = results[backends[0]]
    evidence = {name: evidence_problem(array, tolerance_for("onnxruntime")) for name, array in reference.items()}
    with artifacts.staging() as stage:
        (stage / "outputs").mkdir()
        for backend, arrays in results.items():
            shared_inputs.save_npz(stage / "outputs" / f"{backend}.npz", arrays)
        record = ValidateRecord(
            checker="passed (full_check)", shape_inference="passed (strict)", inputs_sha256=sha256(artifacts.inputs),
            backends=backends, comparisons=comparisons, evidence=evidence,
            passed=all(c.verdict != "fail" for c in comparisons), seconds=round(time.perf_counter() - start, 3),
        )
        write_json(stage / "validate.json", record)
    return record


def check_model(path) -> None:
    """onnx.checker with full_check, then strict shape inference; one clear error each."""
    try:
        onnx.checker.check_model(str(path), full_check=True)
    except onnx.checker.ValidationError as exc:
        raise ValidationError(f"{path}: onnx checker: {first_line(exc) or type(exc).__name__}") from None
    try:
        onnx.shape_inference.infer_shapes(onnx.load(str(path)), check_type=True, strict_mode=True)
    except onnx.shape_inference.InferenceError as exc:
        raise ValidationError(f"{path}: shape inference: {first_line(exc) or type(exc).__name__}") from None

