"""Per-task limits and the local pool's size, from `--memory-gb`, `--timeout` and the machine."""
from __future__ import annotations

import os
from dataclasses import dataclass, field

import psutil

from pipeline.errors import UsageError

GB = 2**30
TYPICAL_TASK_GB = 2.0  # a small model's pipeline peaks near 1.8 GB (BENCHMARKS.md): the default reservation
MACHINE_SHARE = 0.9  # without --memory-gb, a task is killed only before it would exhaust the machine


@dataclass(frozen=True)
class MemoryPlan:
    """`--memory-gb G` for every task and `--memory-gb NAME=G` for one model (both repeatable, last wins)."""

    default_gb: float | None = None
    per_model: dict[str, float] = field(default_factory=dict)

    def limit_bytes(self, name: str) -> int:
        gb = self.per_model.get(name, self.default_gb)
        return int(gb * GB) if gb is not None else int(psutil.virtual_memory().total * MACHINE_SHARE)

    def request_bytes(self, name: str) -> int:
        gb = self.per_model.get(name, self.default_gb)
        return max(1, int((gb if gb is not None else TYPICAL_TASK_GB) * GB))


def parse_memory(values: list[str] | None) -> MemoryPlan:
    default, per_model = None, {}
    for value in values or []:
        name, _, amount = value.rpartition("=")
        gb = _gigabytes(value, amount)
        if name:
            per_model[name] = gb
        else:
            default = gb
    return MemoryPlan(default, per_model)


def _gigabytes(value: str, amount: str) -> float:
    try:
        gb = float(amount)
    except ValueError:
        gb = -1.0
    if not gb > 0:
        raise UsageError(f"--memory-gb {value}: expected a positive number of GB, or NAME=GB for one model")
    return gb


def default_jobs(plan: MemoryPlan) -> int:
    """As many tasks as there are cores, and as fit in the available memory at the typical reservation."""
    per_task = plan.default_gb or TYPICAL_TASK_GB
    by_memory = int(psutil.virtual_memory().available // (per_task * GB))
    return max(1, min(os.cpu_count() or 1, by_memory))
