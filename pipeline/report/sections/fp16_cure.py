"""The report's "fp16 cure" section, from fp16_cure.json (pipeline/convert/fp16_cure.py): which constants
float16 could not hold were raised, and the TFLite fp16 file's error before and after."""
from __future__ import annotations

import json

from pipeline.artifacts.folder import ArtifactDir
from pipeline.report.blocks import e, section as html_section, table

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
    """How the cured file was made (fp16_cure.py's methods; records before the method field were converted)."""
    method = cure.get("method", "converted again" if cure.get("after") else None)
    if method is None:
        return "No cured file was made."
    if method == "converted again":
        return f"Made by converting `{cure['onnx']}` again."
    patched = "; ".join(_patch(p) for p in cure["patches"])
    return (f"Made without a second conversion: raised in `model_float16.tflite` itself ({patched}). "
            f"`{cure['onnx']}` is the same cure on the ONNX graph.")


def _patch(patch: dict) -> str:
    was = f"{patch['old']:.3g} in the float32 file" if patch["old"] else "float32 value not aligned"
    return f"`{patch['tensor']}` read by {', '.join(patch['readers'])}: 0 ({was}) -> {patch['new']:.4g}"


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
    body = (f"<p>{e(_summary(cure))}</p>" + table(HEADERS, _rows(cure))
            + "<ul>" + "".join(f"<li>{e(line[2:])}</li>" for line in _errors(cure)) + "</ul>")
    return html_section("fp16-cure", "fp16 cure", body)
