"""The report's section on the fp16 cure (pipeline/convert/fp16_cure.py): which constants were raised, and
the TFLite fp16 file's error before and after."""
from __future__ import annotations

import json

from pipeline.artifacts.folder import ArtifactDir

RECORD = "fp16_cure.json"  # written by the convert stage (pipeline/convert/fp16_cure.py)


def load(artifacts: ArtifactDir) -> dict | None:
    path = artifacts.root / RECORD
    return json.loads(path.read_text()) if path.exists() else None


def markdown(cure: dict | None) -> list[str]:
    if not cure:
        return []
    lines = ["", "## fp16 cure", "",
             f"Shipped: {'yes' if cure['shipped'] else 'no'} ({cure['reason']}). Made from `{cure['onnx']}`.", "",
             "| node | op | module | constant | old | new |", "|---|---|---|---|---|---|"]
    lines += [f"| {c['node']} | {c['op_type']} | {c['module'] or '-'} | {c['constant']} | {c['old']:.3g} | {c['new']:.4g} |"
              for c in cure["changes"]]
    for label in ("before", "after"):
        errors = cure.get(label)
        if errors:
            worst = "n/a (NaN or Inf)" if errors["max_abs"] is None else f"{errors['max_abs']:.3g}"
            broken = errors["non_finite_samples"] or "none"
            lines.append(f"- {label}: max_abs against {cure['reference']} {worst}; samples with NaN or Inf: {broken}")
    return lines
