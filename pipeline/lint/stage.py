"""The lint stage: run every rule on model.onnx (or a given ONNX file) and write lint.json."""
from __future__ import annotations

import time
from pathlib import Path

import torch

from pipeline import inputs as shared_inputs
from pipeline.artifacts import ArtifactDir, write_json
from pipeline.config import Source
from pipeline.inputs import TensorSpec
from pipeline.lint import run_rules
from pipeline.lint.context import LintContext
from pipeline.onnx_import import load_onnx
from pipeline.torch_model import build_model

NO_MODEL_NOTE = "no PyTorch model (ONNX route): findings that need a module were not checked"


def run(source: Source, artifacts: ArtifactDir, onnx_file: Path | None = None) -> dict:
    start = time.perf_counter()
    onnx_path = onnx_file or artifacts.require(artifacts.onnx, "export")
    context = build_context(source, artifacts, load_onnx(onnx_path))
    findings = run_rules(context)
    counts = {level: sum(f.severity == level for f in findings) for level in ("error", "warning", "info")}
    record = {
        "onnx": str(onnx_path), "findings": [f.to_json() for f in findings], "counts": counts,
        "passed": counts["error"] == 0, "notes": [] if context.torch_model is not None else [NO_MODEL_NOTE],
        "seconds": round(time.perf_counter() - start, 3),
    }
    with artifacts.staging() as stage:
        write_json(stage / "lint.json", record)
    return record


def build_context(source: Source, artifacts: ArtifactDir, model) -> LintContext:
    if source.kind != "config":
        return LintContext(model, from_pytorch=_claims_pytorch(model))
    torch_model = build_model(source)
    return LintContext(model, torch_model, _example_args(source, artifacts), from_pytorch=True)


def _example_args(source: Source, artifacts: ArtifactDir) -> tuple:
    specs = [TensorSpec.from_config(spec) for spec in source.config.inputs]
    if artifacts.inputs.exists():
        first = shared_inputs.feeds(shared_inputs.load_npz(artifacts.inputs))[0]
    else:
        first = shared_inputs.feeds(shared_inputs.generate(specs, 1, source.config.seed))[0]
    return tuple(torch.from_numpy(first[spec.name]) for spec in specs)


def _claims_pytorch(model) -> bool:
    return "pytorch" in model.producer_name.lower()
