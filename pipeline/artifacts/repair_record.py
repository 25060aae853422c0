"""repair.json: why the repair search ran, every candidate it tried, and what it shipped."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

from pipeline.artifacts.records import Record

RECORD = "repair.json"
PRF_FILE = "repair.prf.json"  # the winner's onnx2tf parameter-replacement file (`onnx2tf -prf repair.prf.json`)


@dataclass(frozen=True)
class Divergence(Record):
    """Where the failing TF backend first departed, from the audit's localization."""

    candidate: str
    node: str | None
    op_type: str | None
    module: str | None
    error_in: float | None
    error_out: float | None
    origin: str | None
    span: list[str] = field(default_factory=list)
    outputs_error: dict[str, float] | None = None  # the TF layer model's error at each graph output it aligns


@dataclass(frozen=True)
class BackendError(Record):
    """One TF backend's worst output error after a candidate, against its noise floor."""

    backend: str
    output: str
    verdict: str
    max_abs: float | None
    noise_floor: float | None
    noise_ratio: float | None


@dataclass(frozen=True)
class RepairAttempt(Record):
    """One candidate: a real conversion judged by the real audit (`passed`), or why it could not be."""

    name: str
    kind: str  # "transpose-perm" | "output-transpose" | "input-transpose" | "rewrite" | "strategy"
    why: str
    entries: list[dict]  # onnx2tf parameter-replacement entries (empty for rewrites and strategies)
    converted: bool
    passed: bool
    seconds: float
    error: str | None  # the conversion's error, or the audit's worst failing backend
    max_abs: float | None = None  # worst fp32 TF backend error against the reference
    errors: list[BackendError] = field(default_factory=list)


@dataclass(frozen=True)
class RepairRecord(Record):
    STAGE: ClassVar[str] = "repair"
    trigger: str
    before: list[BackendError]
    divergence: Divergence | None  # the audit's localization (model.onnx, PyTorch modules)
    departure: Divergence | None  # ONNX Runtime vs TF over every tensor of the converted graph
    attempts: list[RepairAttempt]
    winner: str | None
    entries: list[dict]  # the winner's replacement entries (also in repair.prf.json)
    rewrite: str | None  # the winner's rewrite, described
    after: list[BackendError]
    gave_up: str | None  # why the search stopped without a winner
    max_candidates: int
    max_seconds: float
    seconds: float

    @property
    def repaired(self) -> bool:
        return self.winner is not None

    def best(self) -> RepairAttempt | None:
        """The candidate that came closest (the smallest worst-backend error), converted ones only."""
        tried = [a for a in self.attempts if a.converted and a.max_abs is not None]
        return min(tried, key=lambda a: a.max_abs) if tried else None
