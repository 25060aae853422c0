"""Where a run's time goes: named steps with their wall-clock start and length.

`step("export: torch.onnx.export")` times a block; a conversion child sends its own steps
back with its result (`absorb`). A full run writes them to profile.json, which `make bench`
reads for its per-step breakdown. Times are wall-clock (time.time()), so steps of the parent
and of a child that ran at the same time line up, and overlap shows.
"""
from __future__ import annotations

import contextlib
import os
import time
from pathlib import Path
from typing import Iterator

PROFILE_FILE = "profile.json"
STARTED = time.time()  # imported first by `python -m pipeline`: the interpreter's start, give or take 30 ms
_steps: list[dict] = []


@contextlib.contextmanager
def step(name: str) -> Iterator[None]:
    start = time.time()
    try:
        yield
    finally:
        record(name, start, time.time())


def record(name: str, start: float, end: float) -> None:
    _steps.append({"step": name, "start": round(start, 3), "seconds": round(end - start, 3), "pid": os.getpid()})


def absorb(steps: list[dict]) -> None:
    """Steps timed in another process (a conversion child)."""
    _steps.extend(steps)


def taken(since: int = 0) -> list[dict]:
    return list(_steps[since:])


def mark() -> int:
    """A position in the list: `taken(mark())` later gives the steps recorded after it."""
    return len(_steps)


def begin() -> None:
    """A new run in this process: forget the steps of earlier ones (a test session runs many),
    keep the process's start-up."""
    _steps[:] = [s for s in _steps if s["step"].startswith("startup:")]


def write(folder: Path, end: float, file_name: str = PROFILE_FILE) -> None:
    """profile.json: every step relative to the first one (the process start under `python -m
    pipeline`, else the run's first step), sorted by start."""
    from pipeline.artifacts.folder import write_json

    steps = sorted(_steps, key=lambda s: s["start"])
    origin = steps[0]["start"] if steps else end
    write_json(folder / file_name, {
        "wall_seconds": round(end - origin, 3),
        "steps": [{**s, "start": round(s["start"] - origin, 3), "child": s["pid"] != os.getpid()} for s in steps],
    })
