"""What one batch task produced: a frozen record read from the child's exit status and report.json."""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

# What happened to a task, when it did not end with a report: each is named in the batch report.
CRASHED = "crashed"
TIMEOUT = "timeout"
OUT_OF_MEMORY = "out of memory"
STAGE_FAILED = "stage failed"
WORKER_LOST = "worker lost"
VERDICTS = ("pass", "fail", "inconclusive")


@dataclass(frozen=True)
class BackendWorst:
    """The worst comparison of one candidate backend over its outputs."""

    backend: str
    max_abs: float | None
    noise_ratio: float | None


@dataclass(frozen=True)
class TaskResult:
    """One model's run in a batch. `verdict` is pass/fail/inconclusive, or why there is no report."""

    model: str
    arg: str
    verdict: str
    reason: str
    exit_code: int | None
    seconds: float
    peak_rss_mb: float | None = None
    backends: tuple[BackendWorst, ...] = ()
    strategy: str | None = None
    exporter: str | None = None
    timings: dict[str, float] = field(default_factory=dict)
    lint_errors: int | None = None
    report_html: str | None = None  # relative to the batch folder
    log: str | None = None  # relative to the batch folder
    host: str | None = None
    attempts: int = 1

    @property
    def has_report(self) -> bool:
        return self.verdict in VERDICTS

    def to_json(self) -> dict:
        return asdict(self)

    @classmethod
    def from_json(cls, payload: dict) -> "TaskResult":
        backends = tuple(BackendWorst(**b) for b in payload.get("backends", ()))
        return cls(**{**payload, "backends": backends})

    def retried(self, attempts: int) -> "TaskResult":
        return TaskResult(**{**self.__dict__, "attempts": attempts})


def read_report(path: Path) -> dict | None:
    """report.json of a finished run, or None when the run left none."""
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def worst_per_backend(comparisons: list[dict]) -> tuple[BackendWorst, ...]:
    """Per candidate, the largest max_abs and noise_ratio over its outputs (missing or null ones skipped)."""
    by_backend: dict[str, list[dict]] = {}
    for comparison in comparisons:
        by_backend.setdefault(comparison.get("candidate", "?"), []).append(comparison)
    return tuple(BackendWorst(name, _largest(rows, "max_abs"), _largest(rows, "noise_ratio"))
                 for name, rows in by_backend.items())


def _largest(rows: list[dict], key: str) -> float | None:
    values = [float(r[key]) for r in rows if isinstance(r.get(key), (int, float))]
    return max(values) if values else None
