"""report.md: the same content as the terminal summary and report.html, for a PR or a wiki."""
from __future__ import annotations

from pipeline.convert.repair.render import markdown as repair_markdown
from pipeline.names import label
from pipeline.report import int8 as int8_report
from pipeline.report.fmt import fmt_number
from pipeline.report.table import HEADERS, rows


def _localization_markdown(report: dict) -> list[str]:
    entries = report.get("localization")
    if not entries:
        return []
    lines = ["", "## Where the backends part ways", "",
             "| pair | first divergent node | op | module | error in → out | origin |", "|---|---|---|---|---|---|"]
    for e in entries:
        pair = f"{label(e['candidate'])} vs {label(e['reference'])}"
        if not e["found"]:
            lines.append(f"| {pair} | none | | | | {e['explanation']} |")
            continue
        lines.append(f"| {pair} | `{e['node']}` | {e['op_type']} | `{e['module']}` | {fmt_number(e['error_in'])} → "
                     f"{fmt_number(e['error_out'])} | {e['origin']} |")
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


def _diagnose_markdown(diagnosed: dict | None) -> list[str]:
    """The Keras-port diagnosis (pipeline/diagnose/), when one was run into this artifact folder."""
    if not diagnosed:
        return []
    from pipeline.diagnose.record import DiagnoseRecord
    from pipeline.diagnose.render import markdown_section

    return [""] + markdown_section(DiagnoseRecord.from_json(diagnosed))


def _oracle_markdown(oracle: dict | None) -> list[str]:
    """How the verdict was reached: the oracle, the floors, the bound, and the lower-precision rule."""
    if not oracle:
        return []
    if not oracle["available"] and not oracle.get("floors"):
        return ["", f"Verdict rule: no float64 oracle ({oracle['reason']})."]
    floors = ", ".join(f"'{name}' {fmt_number(value)}" for name, value in oracle["floors"].items())
    return ["", f"Verdict rule: each float32 backend's error against the oracle ({oracle['reason']}) must stay within "
                f"{oracle['bound']:g}x the float32 noise floor ({oracle['floor_source']}: {floors}). "
                f"{oracle.get('lower_precision', '')}".rstrip()]


def markdown(report: dict) -> str:
    lines = [
        f"# Conversion report: {report['model']}", "",
        f"**Verdict: {report['verdict'].upper()}** (reference: {label(report['reference'])}, "
        f"{report['samples']} samples, exporter: {report['exporter']}, opset {report['opset']})", "",
    ]
    lines += [f"- {reason}" for reason in report.get("verdict_reasons", [])]
    lines += ["", "| " + " | ".join(HEADERS) + " |", "|" + "---|" * len(HEADERS)]
    lines += ["| " + " | ".join(row) + " |" for row in rows(report)]
    lines += _oracle_markdown(report.get("oracle"))
    if report["notes"]:
        lines += ["", "## Notes", ""] + [f"- {note}" for note in report["notes"]]
    lines += _localization_markdown(report)
    lines += repair_markdown(report.get("repair"))
    lines += _diagnose_markdown(report.get("diagnose"))
    lines += int8_report.markdown(report.get("int8"))
    lines += _lint_markdown(report.get("lint"))
    lines += ["", "## Artifacts", "", "| path | format | sha256 |", "|---|---|---|"]
    lines += [f"| `{a['path']}` | {a['format']} | `{a['sha256'][:16]}…` |" for a in report["artifacts"]]
    lines += ["", "## Timings (s)", ""] + [f"- {stage}: {seconds:.2f}" for stage, seconds in report["timings"].items()]
    lines += ["", "## Versions", ""] + [f"- {name} {version}" for name, version in report["versions"].items()]
    return "\n".join(lines) + "\n"
