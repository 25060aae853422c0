"""A lint finding: one rule's verdict on one node, as every stage after the lint reads it.

Kept below the stages (the lint writes findings, the convert stage's TF-side lint, the audit's
localization and the report read them) so that records.py needs no stage; pipeline.lint re-exports it.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Literal

Severity = Literal["error", "warning", "info"]
SEVERITY_ORDER = {"error": 0, "warning": 1, "info": 2}


@dataclass(frozen=True)
class Finding:
    rule: str
    severity: Severity
    node: str
    op_type: str
    module: str | None  # PyTorch module path, or None when attribution failed
    expected: str | None
    actual: str | None
    message: str  # one line: what is wrong and what to do
    attribution: str = ""  # how the module was found, or why it could not be

    def to_json(self) -> dict:
        return asdict(self)

    @classmethod
    def from_json(cls, raw: dict) -> "Finding":
        return cls(**raw)


def count_findings(findings: list[dict]) -> dict[str, int]:
    """Findings (as JSON objects) per severity."""
    return {level: sum(f["severity"] == level for f in findings) for level in SEVERITY_ORDER}
