"""The lint stage: run every rule on model.onnx (or a given ONNX file) and write lint.json."""
from __future__ import annotations

import time
from pathlib import Path

import torch

from pipeline import inputs as shared_inputs
from pipeline.artifacts.folder import ArtifactDir, write_json
from pipeline.config import Source
from pipeline.inputs import TensorSpec
from pipeline.lint import PHASES, count_findings, load_rules, run_rules
from pipeline.lint.context import LintContext
from pipeline.model.onnx_import import load_onnx
from pipeline.model.torch_model import build_model

NO_MODEL_NOTE = "no PyTorch model (ONNX route): findings that need a module were not checked"


def run(source: Source, artifacts: ArtifactDir, onnx_file: Path | None = None) -> dict:
    """The ONNX-phase rules, before conversion. Writes lint.json."""
    start = time.perf_counter()
    onnx_path = onnx_file or artifacts.require(artifacts.onnx, "export")
    context = build_context(source, artifacts, load_onnx(onnx_path))
    findings = [f.to_json() for f in run_rules(context)]
    notes = [] if context.torch_model is not None else [NO_MODEL_NOTE]
    return _write(artifacts, {"onnx": str(onnx_path), "notes": notes}, findings, time.perf_counter() - start)


def run_tf(source: Source, artifacts: ArtifactDir) -> dict:
    """The TF-phase rules on the converted SavedModel; merged into lint.json."""
    from pipeline.lint.tf_graph import TFGraph

    start = time.perf_counter()
    previous = artifacts.read_record_if_any("lint") or {"onnx": str(artifacts.onnx), "notes": [], "findings": []}
    context = build_context(source, artifacts, load_onnx(artifacts.require(artifacts.onnx, "export")))
    context.tf_graph = TFGraph.from_saved_model(artifacts.require(artifacts.saved_model, "convert-tf"))
    load_rules()
    tf_rules = {name for name, phase in PHASES.items() if phase == "tf"}
    kept = [f for f in previous["findings"] if f["rule"] not in tf_rules]
    findings = kept + [f.to_json() for f in run_rules(context, phase="tf")]
    return _write(artifacts, previous, findings, previous.get("seconds", 0.0) + time.perf_counter() - start)


def _write(artifacts: ArtifactDir, base: dict, findings: list[dict], seconds: float) -> dict:
    counts = count_findings(findings)
    record = {"onnx": base["onnx"], "findings": findings, "counts": counts, "passed": counts["error"] == 0,
              "notes": base.get("notes", []), "seconds": round(seconds, 3)}
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
