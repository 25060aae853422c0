"""What `make bench` and its steps measure with: a command's wall time and peak RSS, the machine, a goal.
Shared by pipeline/tools/bench.py (the models) and pipeline/tools/bench_steps.py (this round's steps)."""
from __future__ import annotations

import os
import platform
import subprocess
import threading
import time
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

import psutil

from pipeline.artifacts.folder import REPO_ROOT

RECORD = REPO_ROOT / "BENCHMARKS.md"


@dataclass(frozen=True)
class Measurement:
    seconds: float
    peak_rss_mb: float


def measure(command: list[str], cwd: Path, ok_codes: tuple[int, ...] | None = (0, 1, 4),
            path_first: Path | None = None) -> Measurement:
    """Run a command to completion; wall time and peak RSS of its process tree. An exit code outside
    `ok_codes` stops the bench (None: the caller judges the outcome by the files written). `path_first`
    goes first on PATH (a virtual environment's bin, as if activated: its commands find each other), and
    PYTHONPATH is dropped (as the 2.x adapter does: onnx2tf_v2.py)."""
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
    if path_first is not None:  # another environment's commands: nothing of this one's Python path
        env["PATH"] = f"{path_first}{os.pathsep}{env.get('PATH', '')}"
        env.pop("PYTHONPATH", None)
    start = time.perf_counter()
    process = subprocess.Popen(command, cwd=cwd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    peak = _watch_rss(process)
    _, stderr = process.communicate()
    seconds = time.perf_counter() - start
    if ok_codes is not None and process.returncode not in ok_codes:  # pass, fail and inconclusive all produce a report
        raise SystemExit(f"error: {' '.join(command)} exited {process.returncode}: {stderr.decode()[-500:]}")
    return Measurement(seconds, peak() / 2**20)


def _watch_rss(process: subprocess.Popen):
    peak = [0]

    def sample() -> None:
        try:
            root = psutil.Process(process.pid)
            while process.poll() is None:
                tree = [root, *root.children(recursive=True)]
                peak[0] = max(peak[0], sum(_rss(p) for p in tree))
                time.sleep(0.05)
        except psutil.NoSuchProcess:
            return

    thread = threading.Thread(target=sample, daemon=True)
    thread.start()
    return lambda: (thread.join(), peak[0])[1]


def _rss(process: psutil.Process) -> int:
    try:
        return process.memory_info().rss
    except psutil.NoSuchProcess:
        return 0


def machine() -> str:
    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.processor() or "unknown CPU")
    memory = psutil.virtual_memory().total / 2**30
    versions = ", ".join(f"{d} {metadata.version(d)}" for d in ("torch", "onnx", "onnxruntime", "tensorflow-cpu", "onnx2tf"))
    return f"{cpu}, {os.cpu_count()} cores, {memory:.0f} GiB RAM, Python {platform.python_version()}; {versions}"


@dataclass(frozen=True)
class Goal:
    what: str
    value: float
    bound: float

    @property
    def met(self) -> bool:
        return self.value <= self.bound

    def line(self) -> str:
        return f"- {self.what}: {self.value:.2f} (target ≤ {self.bound:g}) — {'met' if self.met else '**not met**'}"
