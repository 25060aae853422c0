"""Stage 5, report: report.json, report.md and the terminal summary.

Reads only the records earlier stages wrote, so it can be rerun at any time.
"""
from __future__ import annotations

from importlib import metadata

from pipeline.artifacts.folder import ArtifactDir, sha256, write_json
from pipeline.artifacts.records import AuditRecord, ConvertRecord, ExportRecord, LintRecord, ValidateRecord, merged_lint
from pipeline.report import sections
from pipeline.report.markdown import markdown
from pipeline.report.terminal import print_summary

VERSIONED = {"torch": "torch", "onnx": "onnx", "onnxruntime": "onnxruntime", "tensorflow": "tensorflow-cpu", "onnx2tf": "onnx2tf"}
ARTIFACT_FORMATS = {
    "model.onnx": "onnx", "saved_model": "tf_saved_model", "model.keras": "keras",
    "model_float32.tflite": "tflite_fp32", "model_float16.tflite": "tflite_fp16", "inputs.npz": "inputs",
    "model_int8_selective.tflite": "tflite_int8_selective",
}


def build(name: str, artifacts: ArtifactDir, timings: dict[str, float] | None = None) -> dict:
    """Assemble report.json's content from the stage records."""
    export = artifacts.read(ExportRecord)
    audit = artifacts.read(AuditRecord)
    convert = artifacts.read(ConvertRecord)
    validate = artifacts.read_if_any(ValidateRecord)
    lint = merged_lint(artifacts.read_if_any(LintRecord), convert)
    return {
        "model": name, "verdict": _verdict(audit, lint), "verdict_reasons": _verdict_reasons(audit, lint),
        "signal": audit.signal, "route": export.route, "reference": audit.reference,
        "backends": audit.backends, "exporter": export.exporter, "export_attempts": [a.to_json() for a in export.attempts],
        "opset": export.opset, "samples": audit.samples, "oracle": audit.oracle,
        "fp16_oracle": audit.fp16_oracle, "warnings": audit.warnings,
        "comparisons": [c.to_json() for c in audit.comparisons],
        "sample_labels": audit.sample_labels,
        "histograms": audit.histograms,
        "layers": audit.layers,
        "localization": audit.localization,
        "tflite_layers": audit.tflite_layers,
        **sections.collect(artifacts),  # "repair", "diagnose": pipeline/report/sections/
        "validation": {"checker": validate.checker, "shape_inference": validate.shape_inference,
                       "passed": validate.passed} if validate else {"checker": None, "shape_inference": None, "passed": None},
        "conversion": {"converter": convert.converter, "version": convert.version, "strategy": convert.strategy,
                       "attempts": [a.to_json() for a in convert.attempts], "options": convert.options,
                       "io": convert.io.to_json(), "ambiguous_layouts": convert.ambiguous_layouts,
                       "made_by": convert.made_by},
        "lint": {"findings": [f.to_json() for f in lint.findings], "counts": lint.counts, "notes": lint.notes} if lint else None,
        "notes": export.notes + _made_by_note(convert) + convert.notes + _layout_notes(convert),
        "artifacts": _artifacts(artifacts),
        "timings": timings or _stage_seconds(validate, convert, audit),
        "versions": {**{name: _version(dist) for name, dist in VERSIONED.items()},
                     # the converter that made the shipped files, when it is not the onnx2tf installed here (2.x)
                     **({"converter": f"{convert.converter} {convert.version}"} if convert.version != _version("onnx2tf") else {})},
    }


def _made_by_note(convert: ConvertRecord) -> list[str]:
    """Which converter, version and backend wrote each shipped file (convert.json `made_by`)."""
    if not convert.made_by:
        return []
    return ["files made by: " + "; ".join(f"{fmt}: {made}" for fmt, made in convert.made_by.items())]


def _verdict(audit: AuditRecord, lint: LintRecord | None) -> str:
    """fail (a comparison failed or lint found an error) beats inconclusive beats pass."""
    if lint is not None and not lint.passed:
        return "fail"
    return audit.verdict


def _verdict_reasons(audit: AuditRecord, lint: LintRecord | None) -> list[str]:
    reasons = list(audit.verdict_reasons)
    if lint is not None and not lint.passed:
        reasons.append(f"lint: {lint.counts['error']} error finding(s)")
    return reasons


def run(name: str, artifacts: ArtifactDir, timings: dict[str, float] | None = None, verbose: bool = False) -> dict:
    report = build(name, artifacts, timings)
    from pipeline.report.html import render

    with artifacts.staging() as stage:
        write_json(stage / "report.json", report)
        (stage / "report.md").write_text(markdown(report))
        (stage / "report.html").write_text(render(report))
    print_summary(report, artifacts, verbose=verbose)
    return report


def _stage_seconds(validate: ValidateRecord | None, convert: ConvertRecord, audit: AuditRecord) -> dict[str, float]:
    stages = {"validate": validate.seconds if validate else None, "convert": convert.seconds, "audit": audit.seconds}
    return {stage: seconds for stage, seconds in stages.items() if seconds is not None}


def _layout_notes(convert: ConvertRecord) -> list[str]:
    io = convert.io
    return [f"layout of '{b.name}' is ambiguous: {b.layout.note}" for b in io.inputs + io.outputs if b.layout.ambiguous]


def _artifacts(artifacts: ArtifactDir) -> list[dict]:
    found = [(artifacts.root / name, fmt) for name, fmt in ARTIFACT_FORMATS.items() if (artifacts.root / name).exists()]
    if artifacts.outputs.exists():
        found += [(path, "outputs") for path in sorted(artifacts.outputs.glob("*.npz"))]
    return [{"path": str(path.relative_to(artifacts.root)), "format": fmt, "sha256": sha256(path)} for path, fmt in found]


def _version(dist: str) -> str | None:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return None
