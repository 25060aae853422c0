"""The lint stage: run every rule on model.onnx (or a given ONNX file) and write lint.json."""
from __future__ import annotations

import time
from pathlib import Path

from pipeline import inputs as shared_inputs
from pipeline.artifacts.folder import ArtifactDir, write_json
from pipeline.artifacts.records import LintRecord
from pipeline.config import Source
from pipeline.inputs import TensorSpec
from pipeline.lint import run_rules
from pipeline.lint.context import LintContext
from pipeline.model.onnx_import import load_onnx
from pipeline.model.torch_model import build_model

NO_MODEL_NOTE = "no PyTorch model (ONNX route): findings that need a module were not checked"


def run(source: Source, artifacts: ArtifactDir, onnx_file: Path | None = None) -> LintRecord:
    """The ONNX-phase rules, before conversion. Writes lint.json."""
    start = time.perf_counter()
    onnx_path = onnx_file or artifacts.require(artifacts.onnx, "export")
    context = build_context(source, artifacts, load_onnx(onnx_path))
    notes = [] if context.torch_model is not None else [NO_MODEL_NOTE]
    record = LintRecord.of(str(artifacts.shown(onnx_path)), run_rules(context), notes, time.perf_counter() - start)
    with artifacts.staging() as stage:
        write_json(stage / "lint.json", record)
    return record


# The TFLite files the TF-phase rules read (tflite_fp16_constants: the fp16 file and its float32 twin).
TFLITE_READ = ("fp32", "fp16")


def run_tf(source: Source, artifacts: ArtifactDir, saved_model: Path, tflite: dict[str, Path] | None = None) -> LintRecord:
    """The TF-phase rules on a converted SavedModel and its TFLite files (precision -> file). The convert
    stage calls this right after conversion and keeps the result in its own record (convert.json's `tf_lint`)."""
    from pipeline.lint.tf_graph import TFGraph
    from pipeline.runners import remote

    start = time.perf_counter()
    # TensorFlow reads the SavedModel, in the TF worker if any, while this process reads the ONNX file and the TFLite files
    reading = remote.start(TFGraph.from_saved_model, saved_model)
    try:
        context = build_context(source, artifacts, load_onnx(artifacts.require(artifacts.onnx, "export")))
        context.tflite = tflite
        for precision in TFLITE_READ if "fp16" in (tflite or {}) else ():
            context.tflite_graph(precision)
    finally:
        tf_graph = reading()  # the worker takes no other job before its answer is received
    context.tf_graph = tf_graph
    return LintRecord.of(str(artifacts.shown(artifacts.onnx)), run_rules(context, phase="tf"), [], time.perf_counter() - start)


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
    import torch  # a config route: its model is PyTorch

    return tuple(torch.from_numpy(first[spec.name]) for spec in specs)


def _claims_pytorch(model) -> bool:
    return "pytorch" in model.producer_name.lower()
