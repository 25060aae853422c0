"""The diagnosis for people: the report's "Diagnose" section, the terminal culprit table, diagnose.md and
diagnose.html, all from diagnose.json (pipeline/diagnose/ writes it; this module only reads it).

markdown_section(record) and html_section(record) are the pieces report.md and report.html embed.
"""
from __future__ import annotations

import base64
import io
import math
from html import escape
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # headless: never open a window
import matplotlib.pyplot as plt  # noqa: E402
from rich.table import Table  # noqa: E402

from pipeline.artifacts.diagnose_record import DiagnoseRecord, Finding  # noqa: E402
from pipeline.artifacts.folder import ArtifactDir  # noqa: E402

KEY = "diagnose"
ORDER = 20  # after the repair section

LOG_FLOOR = 1e-12
HEADERS = ["severity", "rule", "keras layer", "module", "attribute", "expected", "actual", "error before",
           "error after", "explained"]


def fmt(value) -> str:
    if value is None:
        return "n/a"
    if isinstance(value, float):
        if math.isinf(value):
            return "inf"
        return f"{value:.3g}"
    return str(value)


def pct(value: float | None) -> str:
    return "n/a" if value is None else f"{100 * value:.1f}%"


def collect(artifacts: ArtifactDir) -> dict | None:
    """diagnose.json's content when a hand-written Keras port was diagnosed into this folder."""
    record = artifacts.read_if_any(DiagnoseRecord)
    return record.to_json() if record else None


def markdown(diagnosed: dict | None) -> list[str]:
    return [""] + markdown_section(DiagnoseRecord.from_json(diagnosed)) if diagnosed else []


def html(diagnosed: dict | None) -> str:
    return html_section(DiagnoseRecord.from_json(diagnosed)) if diagnosed else ""


def write_pages(record: DiagnoseRecord, artifacts: ArtifactDir) -> None:
    """The diagnose command's pages, diagnose.md and diagnose.html, beside the diagnose.json they render."""
    with artifacts.staging() as stage:
        (stage / "diagnose.md").write_text("\n".join(markdown_page(record)) + "\n")
        (stage / "diagnose.html").write_text(html_page(record))


def culprits(record: DiagnoseRecord) -> list[Finding]:
    """Findings sorted by how much error their correction explains, then severity."""
    rank = {"error": 0, "warning": 1, "info": 2}
    return sorted(record.findings, key=lambda f: (-(f.explained or 0.0), rank.get(f.severity, 3)))


def _alone(finding: Finding) -> str:
    share = (finding.detail or {}).get("share_if_only_this_remains")
    return "" if share is None else f" [with every other correction applied, this one alone leaves {pct(share)} of the error]"


def _cells(finding: Finding) -> list[str]:
    return [finding.severity, finding.rule, finding.keras_layer or "(none)", finding.module, finding.attribute,
            fmt(finding.expected), fmt(finding.actual), fmt(finding.error_before), fmt(finding.error_after),
            pct(finding.explained)]


def headline(record: DiagnoseRecord) -> str:
    b = record.before
    line = (f"{record.model}: port {Path(record.port).name} is {record.verdict.replace('_', ' ')}: max |port - PyTorch| {fmt(b.max_abs)}, "
            f"{fmt(b.ratio)}x the float32 noise floor ({fmt(b.floor)}); {len(record.errors)} error finding(s)")
    if record.first_divergent:
        line += f"; first layer off the floor: {record.first_divergent}"
    off = [c.where for c in record.shapes if not c.faithful]
    if off:
        line += f"; not faithful at {'; '.join(off)} (the numbers above are the example shape's)"
    return line


def fix_line(record: DiagnoseRecord) -> str | None:
    if not record.fixed:
        return None
    if "error" in record.fixed:
        return f"fixed port not written ({record.fixed['error']})"
    after = record.fixed["after"]
    return (f"fixed port {record.fixed['path']}: max |port - PyTorch| {fmt(after['max_abs'])}, "
            f"{fmt(after['ratio'])}x the noise floor: {record.fixed['verdict'].replace('_', ' ')}")


def shape_lines(record: DiagnoseRecord) -> list[str]:
    """Dynamic dimensions: the port against PyTorch at each shape besides the example."""
    lines = []
    for check in record.shapes:
        b = check.before
        if b is None:
            lines.append(f"at {check.where}: {check.note}")
        else:
            state = "faithful" if b.within_floor else "NOT faithful"
            lines.append(f"at {check.where}: {state}: max |port - PyTorch| {fmt(b.max_abs)}, {fmt(b.ratio)}x the noise "
                         f"floor ({fmt(b.floor)})")
    return lines


def mapping_lines(record: DiagnoseRecord) -> list[str]:
    """Ambiguities and layers left out of the attribute checks, on either side."""
    m = record.mapping
    lines = [f"ambiguous: {note}" for note in m.get("ambiguities", [])]
    for key, side in (("unmapped_keras", "Keras layers not mapped"), ("unmapped_torch", "PyTorch modules not mapped"),
                      ("unchecked_keras", "Keras layers no rule checks (outputs still compared)"),
                      ("unchecked_torch", "PyTorch modules no rule checks")):
        if m.get(key):
            names = m[key]
            lines.append(f"{side}: {', '.join(names[:8])}" + (f", … {len(names) - 8} more" if len(names) > 8 else ""))
    return lines


def print_summary(record: DiagnoseRecord, folder: Path, console) -> None:
    console.print(headline(record))
    for line in shape_lines(record) + mapping_lines(record):
        console.print(f"  {line}", soft_wrap=True)
    if record.findings:
        table = Table(*HEADERS, title="culprits, by error explained")
        for finding in culprits(record):
            table.add_row(*_cells(finding))
        console.print(table)
        for finding in culprits(record):
            if finding.severity == "error":
                console.print(f"- {finding.keras_layer or finding.module}: {finding.message}{_alone(finding)}", soft_wrap=True)
    together = record.all_corrections
    if together and "explained" in together:
        console.print(f"all corrections together: error {fmt(record.before.error)} -> {fmt(together['error_after'])} "
                      f"({pct(together['explained'])} explained)")
    if fix_line(record):
        console.print(fix_line(record))
    console.print(f"written: {folder / 'diagnose.json'}, diagnose.md, diagnose.html")


def markdown_section(record: DiagnoseRecord) -> list[str]:
    """The diagnosis as Markdown lines (a '## Diagnose' section)."""
    lines = ["## Diagnose: hand-written Keras port", "", headline(record), ""]
    if record.shapes:
        lines += ["At the example shape above, and at the other shapes of its dynamic dimensions:", ""]
        lines += [f"- {line}" for line in shape_lines(record)] + [""]
    if record.findings:
        lines += ["| " + " | ".join(HEADERS + ["message"]) + " |", "|" + "---|" * (len(HEADERS) + 1)]
        for finding in culprits(record):
            lines.append("| " + " | ".join(_md(c) for c in _cells(finding) + [finding.message + _alone(finding)]) + " |")
        lines.append("")
    together = record.all_corrections
    if together and "explained" in together:
        lines += [f"All corrections together: error {fmt(record.before.error)} -> {fmt(together['error_after'])} "
                  f"({pct(together['explained'])} explained).", ""]
    if fix_line(record):
        lines += [fix_line(record), ""]
    lines += [f"- {line}" for line in mapping_lines(record)] + ([""] if mapping_lines(record) else [])
    lines += ["| depth | keras layer | module | max_abs | error vs oracle | floor | ratio |", "|---|---|---|---|---|---|---|"]
    for row in record.layers:
        lines.append(f"| {row.depth} | {row.keras_layer} | {row.module} | {fmt(row.max_abs)} | {fmt(row.error)} | "
                     f"{fmt(row.floor)} | {fmt(row.ratio)}{' ' + row.note if row.note else ''} |")
    return lines + [""]


def markdown_page(record: DiagnoseRecord) -> list[str]:
    return [f"# Diagnose report: {record.model}", ""] + markdown_section(record)[2:]


def _md(text: str) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def html_section(record: DiagnoseRecord) -> str:
    """The diagnosis as one self-contained HTML <section> (the plot is an embedded PNG)."""
    e = lambda v: escape(str(v), quote=True)  # noqa: E731
    parts = [f"<section id=\"diagnose\"><h2>Diagnose: hand-written Keras port</h2><p>{e(headline(record))}</p>"]
    if record.shapes:
        parts.append("<ul>" + "".join(f"<li>{e(line)}</li>" for line in shape_lines(record)) + "</ul>")
    if record.findings:
        head = "".join(f"<th>{e(h)}</th>" for h in HEADERS + ["message"])
        body = "".join(
            f"<tr class=\"severity-{e(f.severity)}\">" + "".join(f"<td>{e(c)}</td>" for c in _cells(f) + [f.message]) + "</tr>"
            for f in culprits(record))
        parts.append(f"<table><tr>{head}</tr>{body}</table>")
    if fix_line(record):
        parts.append(f"<p>{e(fix_line(record))}</p>")
    plot = depth_plot(record)
    if plot:
        parts.append(f"<figure><img alt=\"error vs depth\" src=\"data:image/png;base64,{plot}\">"
                     "<figcaption>error against the float64 oracle per mapped layer, and the float32 noise band "
                     "(PyTorch float32's own error, up to the bound)</figcaption></figure>")
    return "\n".join(parts) + "</section>"


def html_page(record: DiagnoseRecord) -> str:
    style = ("body{font:14px/1.45 system-ui,sans-serif;margin:2rem auto;max-width:72rem;padding:0 1rem}"
             "table{border-collapse:collapse}th,td{border:1px solid #d0d7de;padding:.25rem .5rem;text-align:left}"
             "tr.severity-error td{background:#ffebe9}tr.severity-warning td{background:#fff8c5}img{max-width:100%}")
    title = escape(f"Diagnose: {record.model}")
    return (f"<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>{title}</title>"
            f"<style>{style}</style></head><body>\n{html_section(record)}\n</body></html>\n")


def depth_plot(record: DiagnoseRecord) -> str | None:
    """Base64 PNG: the port's error per layer (and the fixed port's), over the noise band."""
    rows = [r for r in record.layers if r.error is not None]
    if not rows:
        return None
    fig, ax = plt.subplots(figsize=(8.5, 3.2), dpi=90)
    depth = [r.depth for r in rows]
    floor = [max(r.floor, LOG_FLOOR) for r in rows]
    band = [f * record.noise_ratio_bound for f in floor]
    ax.fill_between(depth, floor, band, color="#8c959f", alpha=0.3, label="noise band (floor to bound)")
    ax.plot(depth, [max(r.error, LOG_FLOOR) for r in rows], "o-", color="#cf222e", label="port")
    fixed = [r for r in (record.fixed or {}).get("layers", []) if r.get("error") is not None]
    if fixed:
        ax.plot([r["depth"] for r in fixed], [max(r["error"], LOG_FLOOR) for r in fixed], "s-", color="#1f6feb", label="fixed port")
    ax.set_yscale("log")
    ax.set_xlabel("depth (mapped layer)")
    ax.set_ylabel("max |error| vs float64")
    ax.legend(loc="best", fontsize=8)
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    plt.close(fig)
    return base64.b64encode(buffer.getvalue()).decode()
