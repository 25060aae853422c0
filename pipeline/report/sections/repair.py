"""The report's "Repair" section (report.md and report.html), from repair.json (pipeline/repair/).

What was wrong (node, module, error before), what changed (replacement entries or the rewrite),
the evidence after (each TF backend's error against its noise floor), and every candidate tried.
When nothing passed, the closest candidate and where the search gave up.
"""
from __future__ import annotations

import json

from pipeline.artifacts.folder import ArtifactDir
from pipeline.artifacts.repair_record import RepairRecord
from pipeline.report.blocks import definitions, e, md_row, section as html_section, table
from pipeline.report.fmt import fmt_number

KEY = "repair"
ORDER = 10  # right after the localization it acts on


def collect(artifacts: ArtifactDir) -> dict | None:
    """repair.json's content when the repair search ran."""
    record = artifacts.read_if_any(RepairRecord)
    return record.to_json() if record else None


def section(repair: dict | None) -> dict | None:
    """The parts both renderers show, or None when the search never ran."""
    if not repair:
        return None
    div = repair.get("divergence") or repair.get("departure")
    wrong = (f"{div['op_type']} node `{div['node']}`" + (f" (module `{div['module']}`)" if div.get("module") else "")
             + f": error {fmt_number(div.get('error_in'))} at its inputs, {fmt_number(div.get('error_out'))} at its output"
             if div else "not localized (no TF layer model, or no aligned tensor departs)")
    departure = repair.get("departure")
    finer = (f"{departure['op_type']} node `{departure['node']}` (ONNX Runtime vs Keras over every tensor of the "
             f"converted graph)" if departure else None)
    if repair.get("winner"):
        changed = _changed(repair)
        outcome = f"repaired by candidate `{repair['winner']}` after {_tried(repair['attempts'])}"
    else:
        best = _best(repair["attempts"])
        changed = "nothing: no candidate passed the audit, the shipped models are the original conversion"
        outcome = (f"not repaired ({repair['gave_up']}); the closest candidate, `{best['name']}`, is still off by "
                   f"{fmt_number(best['max_abs'])}" if best else f"not repaired ({repair['gave_up']})")
    return {"trigger": repair["trigger"], "wrong": wrong, "finer": finer, "changed": changed, "outcome": outcome,
            "before": _errors(repair["before"]), "after": _errors(repair["after"]), "attempts": _attempts(repair["attempts"])}


def _changed(repair: dict) -> str:
    """What the winning candidate changed: another conversion strategy's files, a rewrite, or parameter replacements."""
    won = next((a for a in repair["attempts"] if a.get("name") == repair["winner"]), {})
    if won.get("kind") == "strategy" and not repair["entries"] and not repair.get("rewrite"):
        why = f": {won['why']}" if won.get("why") else ""
        return f"the files of the conversion strategy `{repair['winner']}` replace the original's{why}"
    changed = repair.get("rewrite") or f"onnx2tf parameter replacement (`repair.prf.json`): {_entries(repair['entries'])}"
    if repair.get("rewrite") and repair["entries"]:
        changed += f"; then parameter replacement: {_entries(repair['entries'])}"
    return changed


def _tried(attempts: list[dict]) -> str:
    screened = sum(1 for a in attempts if _screened(a))
    return f"{len(attempts) - screened} candidate conversion(s)" + (
        f" and {screened} candidate(s) screened out on the layer model" if screened else "")


def _screened(attempt: dict) -> bool:
    return (attempt.get("error") or "").startswith("screened out")


def _entries(entries: list[dict]) -> str:
    return "; ".join(json.dumps(e, separators=(",", ":")) for e in entries)


def _best(attempts: list[dict]) -> dict | None:
    tried = [a for a in attempts if a["converted"] and a.get("max_abs") is not None]
    return min(tried, key=lambda a: a["max_abs"]) if tried else None


def _errors(errors: list[dict]) -> list[list[str]]:
    return [[e["backend"], e["output"], fmt_number(e["max_abs"]), fmt_number(e["noise_floor"]),
             "n/a" if e["noise_ratio"] is None else f"{e['noise_ratio']:.3g}x", e["verdict"]] for e in errors]


def _attempts(attempts: list[dict]) -> list[list[str]]:
    return [[str(i + 1), a["name"], a["kind"], "pass" if a["passed"] else ("converted" if a["converted"] else "screened out" if _screened(a) else "failed"),
             fmt_number(a.get("max_abs")), f"{a['seconds']:.1f}", a.get("error") or ""] for i, a in enumerate(attempts)]


ERROR_HEADERS = ["backend", "output", "max_abs", "noise floor", "ratio", "verdict"]
ATTEMPT_HEADERS = ["#", "candidate", "kind", "result", "worst fp32 TF max_abs", "seconds", "error"]


def markdown(repair: dict | None) -> list[str]:
    parts = section(repair)
    if parts is None:
        return []
    lines = ["", "## Repair", "", f"- why: {parts['trigger']}", f"- what was wrong: {parts['wrong']}"]
    lines += [f"- first departure: {parts['finer']}"] if parts["finer"] else []
    lines += [f"- what changed: {parts['changed']}", f"- outcome: {parts['outcome']}"]
    for title, rows in (("Before", parts["before"]), ("After", parts["after"])):
        if rows:
            lines += ["", f"{title}:", "", md_row(ERROR_HEADERS), "|" + "---|" * len(ERROR_HEADERS)]
            lines += [md_row(row) for row in rows]
    lines += ["", "Candidates tried:", "", md_row(ATTEMPT_HEADERS), "|" + "---|" * len(ATTEMPT_HEADERS)]
    return lines + [md_row(row) for row in parts["attempts"]]


def html(repair: dict | None) -> str:
    parts = section(repair)
    if parts is None:
        return ""
    terms = [("why", parts["trigger"]), ("what was wrong", parts["wrong"].replace("`", ""))]
    terms += [("first departure", parts["finer"].replace("`", ""))] if parts["finer"] else []
    terms += [("what changed", parts["changed"].replace("`", "")), ("outcome", parts["outcome"].replace("`", ""))]
    body = [definitions(terms)]
    for title, rows in (("Before", parts["before"]), ("After", parts["after"])):
        if rows:
            body += [f"<h3>{e(title)}</h3>", table(ERROR_HEADERS, rows)]
    body += ["<h3>Candidates tried</h3>", table(ATTEMPT_HEADERS, parts["attempts"])]
    return html_section("repair", "Repair", "\n".join(body))
