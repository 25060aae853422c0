"""The terminal summary: lint findings, the comparison table, where backends part ways, the verdict."""
from __future__ import annotations

from collections import Counter

from rich.table import Table

from pipeline.artifacts.folder import ArtifactDir
from pipeline.console import console, results
from pipeline.names import label
from pipeline.report.table import HEADERS, rows


SEVERITY_STYLE = {"error": "bold red", "warning": "yellow", "info": "dim"}


def print_findings(lint: dict, title: str = "lint", verbose: bool = False, out=None) -> None:
    """Errors and warnings in full; infos counted per rule (listed with verbose)."""
    out = out or console
    counts = lint["counts"]
    out.print(f"{title}: {counts['error']} errors, {counts['warning']} warnings, {counts['info']} notes")
    for f in lint["findings"]:
        if f["severity"] != "info" or verbose:
            where = f"{f['node'] or '-'} ({f['op_type']}), module {f['module'] or '?'}"
            out.print(f"  [{SEVERITY_STYLE[f['severity']]}]{f['severity']:7}[/] {f['rule']}: {where}: {f['message']}")
    infos = Counter(f["rule"] for f in lint["findings"] if f["severity"] == "info")
    if infos and not verbose:
        per_rule = ", ".join(f"{rule} {count}" for rule, count in sorted(infos.items()))
        out.print(f"  [dim]info    {sum(infos.values())} notes ({per_rule}); --verbose lists them, report.md has them all[/]")
    for note in lint.get("notes", []):
        out.print(f"  [dim]note[/]    {note}")


def print_summary(report: dict, artifacts: ArtifactDir, verbose: bool = False) -> None:
    """The results, on stdout: lint counts and errors, the table, where backends part ways, the verdict."""
    out = results
    if report.get("lint"):
        print_findings(report["lint"], verbose=verbose, out=out)
    table = Table(title=f"{report['model']}: each backend vs {label(report['reference'])}, {report['samples']} samples")
    for header in HEADERS:
        table.add_column(header, justify="left" if header in ("backend", "output", "result") else "right")
    for row in rows(report):
        table.add_row(*row, style=None if row[-1] == "pass" else "yellow" if row[-1].startswith("pass") else "bold red")
    out.print(table)
    for note in report["notes"]:
        out.print(f"[yellow]note:[/] {note}")
    print_where(report)
    colour = {"pass": "green", "fail": "red"}.get(report["verdict"], "yellow")
    for reason in report.get("verdict_reasons", []):
        out.print(f"[{colour}]why:[/] {reason}")
    for warning in report.get("warnings") or []:
        out.print(f"[yellow]warning:[/] {warning}")
    out.print(f"verdict: [bold {colour}]{report['verdict'].upper()}[/]   report: {artifacts.shown(artifacts.report_md)} "
                  f"and {artifacts.shown(artifacts.root / 'report.html')}")


def print_where(report: dict) -> None:
    """The where: lines (on stdout) for a report or an audit record's localization and layers."""
    for line in localization_lines(report):
        results.print(f"[bold]where:[/] {line}")


def localization_lines(report: dict) -> list[str]:
    """One line per backend pair that diverges: the first node, its module, and whose error it is."""
    lines = []
    for entry in report.get("localization") or []:
        if entry["found"]:
            lines.append(entry["explanation"] + (f"; lint: {entry['lint_findings'][0]['message']}" if entry["lint_findings"] else ""))
    layers = report.get("layers") or {}
    if layers and not layers.get("ran"):
        lines.append(f"layer-by-layer comparison not run: {layers.get('reason')}")
    elif layers and not lines:
        compared = ", ".join(f"{p['candidate']} {len(p['tensors'])}" for p in layers.get("pairs", [])
                             if p["candidate"] != "pytorch" and p["tensors"])
        limit = "the float32 noise floor" if layers.get("judged_by") == "noise floor" else "tolerance"
        # Nothing compared (no layer model, as for onnx2tf 2.x's files) is no evidence that nothing departs.
        lines.append(f"layer by layer (tensors compared: {compared}): no backend departs beyond {limit}" if compared
                     else "layer by layer: no intermediate tensor was compared, so nothing is said about where an error starts")
    lines += [r["where"] for r in report.get("tflite_layers") or [] if r.get("where")]
    return lines + [f"layer by layer: {note}" for note in layers.get("notes", [])]
