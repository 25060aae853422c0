"""The report's "fp16 cure" section, from fp16_cure.json (pipeline/convert/fp16_cure.py): which constants
float16 could not hold were raised, and the TFLite fp16 file's error before and after."""
from __future__ import annotations

import json

from pipeline.artifacts.folder import ArtifactDir
from pipeline.convert.fp16_cure import CONVERTED, PATCHED
from pipeline.convert.fp16_patch import Patch
from pipeline.report.blocks import e, inline, section as html_section, table

KEY = "fp16_cure"
ORDER = 15  # after the repair, before the diagnosis
RECORD = "fp16_cure.json"  # written by the convert stage
HEADERS = ["node", "op", "module", "constant", "old", "new"]


def collect(artifacts: ArtifactDir) -> dict | None:
    path = artifacts.root / RECORD
    return json.loads(path.read_text()) if path.exists() else None


def _rows(cure: dict) -> list[list[str]]:
    return [[c["node"], c["op_type"], c["module"] or "-", c["constant"], f"{c['old']:.3g}", f"{c['new']:.4g}"]
            for c in cure["changes"]]


def _summary(cure: dict) -> str:
    return f"Shipped: {'yes' if cure['shipped'] else 'no'} ({cure['reason']}). {_made(cure)}"


def _made(cure: dict) -> str:
    """How the cured file was made (fp16_cure.py's methods; a record from before the field was converted)."""
    method = cure.get("method", CONVERTED if cure.get("after") else None)
    tried = f" The patch step: {cure['patch_note']}." if cure.get("patch_note") else ""
    if method == PATCHED:
        patched = "; ".join(Patch(**p).describe() for p in cure["patches"])
        return (f"Made without a second conversion: raised in `model_float16.tflite` itself ({patched}). "
                f"`{cure['onnx']}` is the same cure on the ONNX graph.")
    if method == CONVERTED:
        return f"Made by converting `{cure['onnx']}` again.{tried}"
    return f"No cured file was made.{tried}"


def _errors(cure: dict) -> list[str]:
    lines = []
    for label in ("before", "after"):
        errors = cure.get(label)
        if errors:
            worst = "n/a (NaN or Inf)" if errors["max_abs"] is None else f"{errors['max_abs']:.3g}"
            broken = errors["non_finite_samples"] or "none"
            lines.append(f"- {label}: max_abs against {cure['reference']} {worst}; samples with NaN or Inf: {broken}")
    return lines


def markdown(cure: dict | None) -> list[str]:
    if not cure:
        return []
    lines = ["", "## fp16 cure", "", _summary(cure), "", "| " + " | ".join(HEADERS) + " |", "|" + "---|" * len(HEADERS)]
    lines += ["| " + " | ".join(row) + " |" for row in _rows(cure)]
    return lines + _errors(cure)


def html(cure: dict | None) -> str:
    if not cure:
        return ""
    body = (f"<p>{inline(_summary(cure))}</p>" + table(HEADERS, _rows(cure))
            + "<ul>" + "".join(f"<li>{e(line[2:])}</li>" for line in _errors(cure)) + "</ul>")
    return html_section("fp16-cure", "fp16 cure", body)
