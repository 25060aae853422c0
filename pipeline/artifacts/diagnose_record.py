"""The diagnosis as data: findings, per-layer errors, the verdict; serialised to diagnose.json."""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, ClassVar

SEVERITIES = ("error", "warning", "info")
FINDING_FIELDS = ("rule", "severity", "keras_layer", "module", "attribute", "expected", "actual", "message",
                  "error_before", "error_after", "explained", "detail")
OUTPUT_FIELDS = ("max_abs", "error", "floor", "ratio", "within_floor")
FAITHFUL, NOT_FAITHFUL = "faithful", "not_faithful"  # diagnose.json verdicts


@dataclass(frozen=True)
class Finding:
    """One attribute of one mapped pair that differs from PyTorch (or a note about it)."""

    rule: str
    severity: str
    keras_layer: str | None  # None: a PyTorch module the port has no layer for
    module: str
    attribute: str
    expected: Any
    actual: Any
    message: str
    error_before: float | None = None
    error_after: float | None = None
    explained: float | None = None
    detail: dict | None = None
    # a pipeline.diagnose.corrections.Correction (left out of diagnose.json); typed loosely so that this
    # record, which the report reads, does not import the diagnose stage
    correction: Any = field(default=None, compare=False, repr=False)

    def to_json(self) -> dict:
        return {
            "rule": self.rule, "severity": self.severity, "keras_layer": self.keras_layer, "module": self.module,
            "attribute": self.attribute, "expected": self.expected, "actual": self.actual,
            "error_before": self.error_before, "error_after": self.error_after, "explained": self.explained,
            "message": self.message, "fix": self.correction.description if self.correction else None,
            "detail": self.detail,
        }

    @classmethod
    def from_json(cls, raw: dict) -> "Finding":
        """The finding as read back from diagnose.json (its correction is not stored, only described)."""
        return cls(**{k: raw.get(k) for k in FINDING_FIELDS})


@dataclass(frozen=True)
class LayerRow:
    """One mapped pair's output against PyTorch float32 and the float64 oracle."""

    depth: int
    keras_layer: str
    module: str
    kind: str
    max_abs: float | None  # against PyTorch float32
    error: float | None  # against the float64 oracle
    floor: float | None  # PyTorch float32's own error against the oracle
    ratio: float | None
    within_floor: bool | None
    note: str = ""

    def to_json(self) -> dict:
        return dict(self.__dict__)

    @classmethod
    def from_json(cls, raw: dict) -> "LayerRow":
        return cls(**raw)


@dataclass(frozen=True)
class OutputError:
    """The port's outputs (all outputs, worst case) against PyTorch float32 and the oracle."""

    max_abs: float
    error: float
    floor: float
    ratio: float
    within_floor: bool

    def to_json(self) -> dict:
        return dict(self.__dict__)

    @classmethod
    def from_json(cls, raw: dict) -> "OutputError":
        return cls(**{k: (math.inf if raw.get(k) is None and k != "within_floor" else raw.get(k)) for k in OUTPUT_FIELDS})


@dataclass(frozen=True)
class ShapeCheck:
    """A model with dynamic dimensions: the port's outputs at one more shape, against PyTorch there."""

    shape: dict  # {dimension name: size}, the dimensions that differ from the example
    where: str  # every dynamic dimension with its size, e.g. "batch 2, height 24, width 40"
    before: OutputError | None  # None: not compared (note says why)
    note: str = ""

    @property
    def faithful(self) -> bool:
        return self.before is not None and self.before.within_floor

    def to_json(self) -> dict:
        return {"shape": self.shape, "where": self.where, "before": self.before.to_json() if self.before else None,
                "note": self.note}

    @classmethod
    def from_json(cls, raw: dict) -> "ShapeCheck":
        before = OutputError.from_json(raw["before"]) if raw.get("before") else None
        return cls(raw["shape"], raw["where"], before, raw.get("note", ""))


@dataclass(frozen=True)
class DiagnoseRecord:
    STAGE: ClassVar[str] = "diagnose"  # diagnose.json, for ArtifactDir.read

    model: str
    port: str
    layout: str
    samples: int
    verdict: str
    findings: tuple[Finding, ...]
    before: OutputError
    layers: tuple[LayerRow, ...]
    first_divergent: str | None
    mapping: dict
    all_corrections: dict | None = None
    fixed: dict | None = None  # path, the rerun's OutputError and its verdict
    noise_ratio_bound: float = 10.0
    shapes: tuple[ShapeCheck, ...] = ()  # dynamic dimensions: the comparison at each shape besides the example

    @property
    def errors(self) -> list[Finding]:
        return [f for f in self.findings if f.severity == "error"]

    @property
    def faithful(self) -> bool:
        return self.verdict == FAITHFUL

    def to_json(self) -> dict:
        after = (self.fixed or {}).get("after") or {}
        return {
            "model": self.model, "port": self.port, "verdict": self.verdict,
            "findings": [f.to_json() for f in self.findings],
            "max_abs_before": self.before.max_abs, "max_abs_after_fix": after.get("max_abs"),
            "error_before": self.before.error, "error_after_fix": after.get("error"),
            "noise_floor": self.before.floor, "noise_ratio_before": self.before.ratio,
            "noise_ratio_after_fix": after.get("ratio"), "noise_ratio_bound": self.noise_ratio_bound,
            "within_noise_floor_before": self.before.within_floor, "within_noise_floor_after_fix": after.get("within_floor"),
            "first_divergent_layer": self.first_divergent, "all_corrections": self.all_corrections,
            "fixed": self.fixed, "layout": self.layout, "samples": self.samples,
            "counts": {s: sum(f.severity == s for f in self.findings) for s in SEVERITIES},
            "layers": [row.to_json() for row in self.layers], "mapping": self.mapping, "before": self.before.to_json(),
            "shapes": [check.to_json() for check in self.shapes],
        }

    @classmethod
    def from_json(cls, raw: dict) -> "DiagnoseRecord":
        """diagnose.json read back, e.g. to render markdown_section/html_section into the report."""
        return cls(
            model=raw["model"], port=raw["port"], layout=raw["layout"], samples=raw["samples"], verdict=raw["verdict"],
            findings=tuple(Finding.from_json(f) for f in raw["findings"]), before=OutputError.from_json(raw["before"]),
            layers=tuple(LayerRow.from_json(r) for r in raw["layers"]), first_divergent=raw.get("first_divergent_layer"),
            mapping=raw.get("mapping") or {}, all_corrections=raw.get("all_corrections"), fixed=raw.get("fixed"),
            noise_ratio_bound=raw.get("noise_ratio_bound", 10.0),
            shapes=tuple(ShapeCheck.from_json(c) for c in raw.get("shapes", [])),
        )
