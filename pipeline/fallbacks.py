"""Export fallbacks around conversion, as a list of strategies.

The convert stage already tries its own strategies (pipeline.convert.strategies).
When all of them fail on the pipeline's own export, the model is exported again
with another exporter or opset, validated, linted and converted again. Which
choice produced the artifacts, and why the earlier ones failed, is recorded in
export.json and convert.json. The audit still decides the verdict.
"""
from __future__ import annotations

import re
from typing import Callable

from pipeline.artifacts import ArtifactDir
from pipeline.config import Source
from pipeline.errors import ConversionError, PipelineError
from pipeline.export import ExportChoice

EXPORT_FALLBACKS = (
    ExportChoice("torchscript", 17, "the TorchScript exporter writes other op patterns (and keeps BatchNorm unfused in some models)"),
    ExportChoice("dynamo", 17, "an older opset makes the exporter decompose ops that onnx2tf 1.x handles better"),
)


def convert_with_fallbacks(source: Source, artifacts: ArtifactDir, run_stage: Callable[[str], None], given_onnx: bool) -> None:
    """Run convert-tf; on failure re-export with each fallback in turn. Raises the full story if all fail."""
    try:
        run_stage("convert-tf")
        return
    except ConversionError as exc:
        first = with_module(str(exc), source, artifacts)
        if source.kind != "config" or given_onnx:
            raise ConversionError(first) from None
    failures = [f"{_used(artifacts)}: {first}"]
    for choice in _choices(artifacts):
        try:
            _re_export(source, artifacts, choice)
            for stage in ("validate", "lint", "convert-tf"):
                run_stage(stage)
            return
        except PipelineError as exc:  # this fallback's export, validation or conversion failed: next one
            failures.append(f"{choice.exporter} opset {choice.opset}: {with_module(str(exc), source, artifacts)}")
    raise ConversionError("conversion failed with every export and conversion strategy: " + " | ".join(failures))


def _used(artifacts: ArtifactDir) -> str:
    record = artifacts.read_record("export")
    return f"{record['exporter']} opset {record['opset']}"


def _choices(artifacts: ArtifactDir) -> list[ExportChoice]:
    record = artifacts.read_record("export")
    return [c for c in EXPORT_FALLBACKS if (c.exporter, c.opset) != (record["exporter"], record["opset"])]


def _re_export(source: Source, artifacts: ArtifactDir, choice: ExportChoice) -> None:
    from pipeline import export
    from pipeline.console import console

    console.rule(f"[bold]fallback: re-export with {choice.exporter}, opset {choice.opset}")
    export.run(source, artifacts, choice=choice)


def with_module(message: str, source: Source, artifacts: ArtifactDir) -> str:
    """Add the PyTorch module of the node a conversion failed on, when it can be told."""
    match = re.search(r"on node '([^']+)' \(([^)]+)\)", message)
    if not match or source.kind != "config" or not artifacts.onnx.exists():
        return message
    import onnx

    from pipeline.lint.context import LintContext
    from pipeline.torch_model import build_model

    model = onnx.load(str(artifacts.onnx))
    node = next((n for n in model.graph.node if n.name == match.group(1)), None)
    if node is None:
        return message
    where = LintContext(model, build_model(source)).attribute(node)
    module = f"module {where.module}" if where.module else f"module unknown: {where.note}"
    return message.replace(match.group(0), f"on node '{match.group(1)}' ({match.group(2)}, {module})", 1)
