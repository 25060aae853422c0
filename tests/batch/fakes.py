"""Stand-in task functions for executor and resume tests: no conversion, but the real result and
report-reading code (task.describe). Module-level so spawned workers and Ray workers can import them."""
from __future__ import annotations

import json
import os
from pathlib import Path

from pipeline.batch.result import TaskResult
from pipeline.batch.task import Ended, TaskSpec, describe


def write_report(artifacts: Path, verdict: str = "pass") -> None:
    artifacts.mkdir(parents=True, exist_ok=True)
    (artifacts / "report.json").write_text(json.dumps({
        "model": artifacts.name, "verdict": verdict, "verdict_reasons": [] if verdict == "pass" else ["made up"],
        "comparisons": [{"candidate": "tflite_fp32", "output": "y", "max_abs": 2e-6, "noise_ratio": 0.5},
                        {"candidate": "tflite_fp32", "output": "z", "max_abs": 1e-6, "noise_ratio": None}],
        "conversion": {"strategy": "default"}, "lint": {"counts": {"error": 0, "warning": 1, "info": 0}},
        "timings": {"export": 1.0, "convert": 2.0},
    }))
    (artifacts / "report.html").write_text("<html></html>")


def calls(root: Path) -> list[str]:
    path = root / "calls.txt"
    return path.read_text().split() if path.exists() else []


def fake_task(spec: TaskSpec) -> TaskResult:
    """Pretend to convert: record the call, write a report, describe it with the real code."""
    spec.root.mkdir(parents=True, exist_ok=True)
    with open(spec.root / "calls.txt", "a") as handle:
        handle.write(spec.model.name + "\n")
    write_report(spec.artifacts)
    spec.log.parent.mkdir(parents=True, exist_ok=True)
    spec.log.touch()
    return describe(spec, Ended(0, None, 0), 0.1)


def dies_once(spec: TaskSpec) -> TaskResult:
    """The worker process dies the first time it runs this model (as if killed), then works."""
    flag = spec.root / f"{spec.model.name}.died"
    if not flag.exists():
        spec.root.mkdir(parents=True, exist_ok=True)
        flag.touch()
        os._exit(1)
    return fake_task(spec)


def always_dies(spec: TaskSpec) -> TaskResult:
    os._exit(1)


def raises(spec: TaskSpec) -> TaskResult:
    raise RuntimeError("a bug in the task")
