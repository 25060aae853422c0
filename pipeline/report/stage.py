"""Stage 5, report: report.json, report.md and the terminal summary.

Reads only the records earlier stages wrote, so it can be rerun at any time.
"""
from __future__ import annotations

from importlib import metadata

from rich.table import Table

from pipeline.artifacts.folder import ArtifactDir, sha256, write_json
from pipeline.runners.factory import BACKEND_LABELS
from pipeline.console import console

VERSIONED = {"torch": "torch", "onnx": "onnx", "onnxruntime": "onnxruntime", "tensorflow": "tensorflow-cpu", "onnx2tf": "onnx2tf"}
ARTIFACT_FORMATS = {
    "model.onnx": "onnx", "saved_model": "tf_saved_model", "model.keras": "keras",
    "model_float32.tflite": "tflite_fp32", "model_float16.tflite": "tflite_fp16", "inputs.npz": "inputs",
}


def build(name: str, artifacts: ArtifactDir, timings: dict[str, float] | None = None) -> dict:
    """Assemble report.json's content from the stage records."""
    export = artifacts.read_record("export")
    audit = artifacts.read_record("audit")
    convert = artifacts.read_record("convert")
    validate = artifacts.read_record_if_any("validate") or {}
    lint = artifacts.read_record_if_any("lint")
    return {
        "model": name, "verdict": _verdict(audit, lint), "verdict_reasons": _verdict_reasons(audit, lint),
        "signal": audit.get("signal"), "route": export["route"], "reference": audit["reference"],
        "backends": audit["backends"], "exporter": export["exporter"], "export_attempts": export["attempts"],
        "opset": export["opset"], "samples": audit["samples"],
        "comparisons": audit["comparisons"],
        "sample_labels": audit.get("sample_labels"),
        "histograms": audit.get("histograms", []),
        "layers": audit.get("layers"),
        "localization": audit.get("localization"),
        "validation": {k: validate.get(k) for k in ("checker", "shape_inference", "passed")},
        "conversion": {k: convert.get(k) for k in ("converter", "version", "strategy", "attempts", "options", "io",
                                                  "ambiguous_layouts")},
        "lint": {"findings": lint["findings"], "counts": lint["counts"], "notes": lint["notes"]} if lint else None,
        "notes": export.get("notes", []) + convert.get("notes", []) + _layout_notes(convert),
        "artifacts": _artifacts(artifacts),
        "timings": timings or _stage_seconds(artifacts, export, validate, convert, audit),
        "versions": {name: _version(dist) for name, dist in VERSIONED.items()},
    }


def _verdict(audit: dict, lint: dict | None) -> str:
    """fail (a comparison failed or lint found an error) beats inconclusive beats pass."""
    if lint is not None and not lint["passed"]:
        return "fail"
    return audit["verdict"]


def _verdict_reasons(audit: dict, lint: dict | None) -> list[str]:
    reasons = list(audit.get("verdict_reasons", []))
    if lint is not None and not lint["passed"]:
        reasons.append(f"lint: {lint['counts']['error']} error finding(s)")
    return reasons


def run(name: str, artifacts: ArtifactDir, timings: dict[str, float] | None = None) -> dict:
    report = build(name, artifacts, timings)
    from pipeline.report.html import render

    with artifacts.staging() as stage:
        write_json(stage / "report.json", report)
        (stage / "report.md").write_text(markdown(report))
        (stage / "report.html").write_text(render(report))
    print_summary(report, artifacts)
    return report


def _stage_seconds(artifacts: ArtifactDir, *records: dict) -> dict[str, float]:
    stages = ("export", "validate", "convert", "audit")
    return {stage: record.get("seconds") for stage, record in zip(stages, records) if record.get("seconds") is not None}


def _layout_notes(convert: dict) -> list[str]:
    io = convert["io"]
    return [f"layout of '{b['name']}' is ambiguous: {b['note']}" for b in io["inputs"] + io["outputs"] if b["ambiguous"]]


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


def _fmt(value: float | None) -> str:
    if value is None or value != value:
        return "n/a"
    return f"{value:.3g}" if abs(value) >= 1e-3 or value == 0 else f"{value:.2e}"


def _rows(report: dict) -> list[list[str]]:
    rows = []
    for c in report["comparisons"]:
        verdict = c.get("verdict", "pass" if c["passed"] else "fail")
        result = verdict if verdict == "pass" else f"{verdict.upper()}: {c.get('reason') or c.get('error') or ''}"
        rows.append([
            BACKEND_LABELS.get(c["candidate"], c["candidate"]), c["output"], _fmt(c["max_abs"]), _fmt(c["mean_abs"]),
            _fmt(c["max_rel"]), _fmt(c["cosine"]), f"{c['atol']:g}", f"{c['rtol']:g}", result,
        ])
    return rows


HEADERS = ["backend", "output", "max_abs", "mean_abs", "max_rel", "cosine", "atol", "rtol", "result"]


SEVERITY_STYLE = {"error": "bold red", "warning": "yellow", "info": "dim"}


def print_findings(lint: dict, title: str = "lint") -> None:
    counts = lint["counts"]
    console.print(f"{title}: {counts['error']} errors, {counts['warning']} warnings, {counts['info']} notes")
    for f in lint["findings"]:
        where = f"{f['node'] or '-'} ({f['op_type']}), module {f['module'] or '?'}"
        console.print(f"  [{SEVERITY_STYLE[f['severity']]}]{f['severity']:7}[/] {f['rule']}: {where}: {f['message']}")
    for note in lint.get("notes", []):
        console.print(f"  [dim]note[/]    {note}")


def print_summary(report: dict, artifacts: ArtifactDir) -> None:
    if report.get("lint"):
        print_findings({**report["lint"], "passed": report["lint"]["counts"]["error"] == 0})
    table = Table(title=f"{report['model']}: each backend vs {BACKEND_LABELS[report['reference']]}, {report['samples']} samples")
    for header in HEADERS:
        table.add_column(header, justify="left" if header in ("backend", "output", "result") else "right")
    for row in _rows(report):
        table.add_row(*row, style=None if row[-1] == "pass" else "bold red")
    console.print(table)
    for note in report["notes"]:
        console.print(f"[yellow]note:[/] {note}")
    for line in localization_lines(report):
        console.print(f"[bold]where:[/] {line}")
    colour = {"pass": "green", "fail": "red"}.get(report["verdict"], "yellow")
    for reason in report.get("verdict_reasons", []):
        console.print(f"[{colour}]why:[/] {reason}")
    console.print(f"verdict: [bold {colour}]{report['verdict'].upper()}[/]   report: {artifacts.shown(artifacts.report_md)} "
                  f"and {artifacts.shown(artifacts.root / 'report.html')}")


def localization_lines(report: dict) -> list[str]:
    """One line per backend pair that diverges: the first node, its module, and whose error it is."""
    lines = []
    for entry in report.get("localization") or []:
        if entry["found"]:
            lines.append(entry["explanation"] + (f"; lint: {entry['lint_findings'][0]['message']}" if entry["lint_findings"] else ""))
    layers = report.get("layers") or {}
    if layers and not layers.get("ran"):
        lines.append(f"layer-by-layer comparison not run: {layers.get('reason')}")
    return lines


def _localization_markdown(report: dict) -> list[str]:
    entries = report.get("localization")
    if not entries:
        return []
    lines = ["", "## Where the backends part ways", "",
             "| pair | first divergent node | op | module | error in → out | origin |", "|---|---|---|---|---|---|"]
    for e in entries:
        pair = f"{BACKEND_LABELS.get(e['candidate'], e['candidate'])} vs {BACKEND_LABELS.get(e['reference'], e['reference'])}"
        if not e["found"]:
            lines.append(f"| {pair} | none | | | | {e['explanation']} |")
            continue
        lines.append(f"| {pair} | `{e['node']}` | {e['op_type']} | `{e['module']}` | {_fmt(e['error_in'])} → "
                     f"{_fmt(e['error_out'])} | {e['origin']} |")
    return lines + [""] + [f"- {e['explanation']}" for e in entries if e["found"]]


def _lint_markdown(lint: dict | None) -> list[str]:
    if lint is None:
        return []
    counts = lint["counts"]
    lines = ["", "## Lint", "", f"{counts['error']} errors, {counts['warning']} warnings, {counts['info']} notes."]
    if lint["findings"]:
        lines += ["", "| severity | rule | node | op | module | expected | actual | message |", "|---|---|---|---|---|---|---|---|"]
        lines += [f"| {f['severity']} | {f['rule']} | `{f['node']}` | {f['op_type']} | `{f['module']}` | {f['expected']} | "
                  f"{f['actual']} | {f['message'].replace('|', '/')} |" for f in lint["findings"]]
    return lines + [f"- {note}" for note in lint.get("notes", [])]


def markdown(report: dict) -> str:
    lines = [
        f"# Conversion report: {report['model']}", "",
        f"**Verdict: {report['verdict'].upper()}** (reference: {BACKEND_LABELS[report['reference']]}, "
        f"{report['samples']} samples, exporter: {report['exporter']}, opset {report['opset']})", "",
    ]
    lines += [f"- {reason}" for reason in report.get("verdict_reasons", [])]
    lines += ["", "| " + " | ".join(HEADERS) + " |", "|" + "---|" * len(HEADERS)]
    lines += ["| " + " | ".join(row) + " |" for row in _rows(report)]
    if report["notes"]:
        lines += ["", "## Notes", ""] + [f"- {note}" for note in report["notes"]]
    lines += _localization_markdown(report)
    lines += _lint_markdown(report.get("lint"))
    lines += ["", "## Artifacts", "", "| path | format | sha256 |", "|---|---|---|"]
    lines += [f"| `{a['path']}` | {a['format']} | `{a['sha256'][:16]}…` |" for a in report["artifacts"]]
    lines += ["", "## Timings (s)", ""] + [f"- {stage}: {seconds:.2f}" for stage, seconds in report["timings"].items()]
    lines += ["", "## Versions", ""] + [f"- {name} {version}" for name, version in report["versions"].items()]
    return "\n".join(lines) + "\n"
