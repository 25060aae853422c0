"""THE batch task: one model's whole pipeline in a child process, supervised for time and memory.

Both executors run `run_task`. The child is `python -m pipeline convert MODEL --out DIR`, so
TensorFlow, ONNX Runtime and torch memory go back to the system when it exits, and a model
that crashes takes nothing else down. The memory limit is enforced on the resident memory of
the child's whole process tree (sampled), not with RLIMIT_AS: TensorFlow and torch reserve far
more address space than they touch, so an address-space cap would kill healthy runs.
"""
from __future__ import annotations

import ctypes
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import psutil

from pipeline.batch.models import BatchModel
from pipeline.batch.result import (
    CRASHED, OUT_OF_MEMORY, STAGE_FAILED, TIMEOUT, TaskResult, read_report, worst_per_backend,
)

REPO_ROOT = Path(__file__).resolve().parent.parent.parent
SAMPLE_SECONDS = 0.2
GRACE_SECONDS = 10.0  # between SIGTERM (the child cleans up its staging folder) and SIGKILL
REPORTED_EXIT_CODES = (0, 1, 4)  # pass, fail, inconclusive: the run wrote report.json
PR_SET_PDEATHSIG = 1
STOP_FILE = ".batch-stop"  # in the batch folder while an interrupted batch drains its pool


@dataclass(frozen=True)
class TaskSpec:
    """One model to run, where its artifacts go, and its limits."""

    model: BatchModel
    root: Path  # the batch folder: artifacts in root/<name>/, the child's output in root/logs/<name>.log
    timeout_s: float
    memory_limit_bytes: int | None  # the child's tree is killed above it
    memory_request_bytes: int = 2 << 30  # what Ray reserves for the task when placing it

    @property
    def artifacts(self) -> Path:
        return self.root / self.model.name

    @property
    def log(self) -> Path:
        return self.root / "logs" / f"{self.model.name}.log"


@dataclass(frozen=True)
class Ended:
    """How the child ended: its exit status, why we killed it (if we did), its peak memory."""

    returncode: int
    killed_for: str | None
    peak_rss_bytes: int


def run_task(spec: TaskSpec) -> TaskResult:
    """Run one model's pipeline to the end (or to its limit) and describe the outcome."""
    start = time.perf_counter()
    if (spec.root / STOP_FILE).exists():
        return TaskResult(model=spec.model.name, arg=spec.model.arg, verdict=CRASHED, exit_code=None, seconds=0.0,
                          reason="not started: the batch was interrupted")
    spec.log.parent.mkdir(parents=True, exist_ok=True)
    command = [sys.executable, "-m", "pipeline", "convert", spec.model.arg, "--out", str(spec.artifacts)]
    with open(spec.log, "wb") as log:
        ended = supervise(command, log, spec.timeout_s, spec.memory_limit_bytes)
    return describe(spec, ended, time.perf_counter() - start)


def supervise(command: list[str], log, timeout_s: float, memory_limit_bytes: int | None) -> Ended:
    """Run command in its own process group; kill the group past the timeout or the memory limit."""
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "PYTHONUNBUFFERED": "1"}
    child = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, cwd=REPO_ROOT,
                             env=env, start_new_session=True, preexec_fn=_die_with_parent)
    deadline = time.monotonic() + timeout_s
    peak, killed_for = 0, None
    try:
        while child.poll() is None and killed_for is None:
            rss = _tree_rss(child.pid)
            peak = max(peak, rss)
            if memory_limit_bytes is not None and rss > memory_limit_bytes:
                killed_for = OUT_OF_MEMORY
                _kill_group(child, signal.SIGKILL)  # no grace: it is already over its budget
            elif time.monotonic() > deadline:
                killed_for = TIMEOUT
                _stop_group(child)
            else:
                time.sleep(SAMPLE_SECONDS)
    except BaseException:  # the worker itself is being interrupted: take the child down with it, undisturbed
        _ignore_further_interrupts()
        raise
    finally:
        if child.poll() is None:  # interrupted, or killed by us a moment ago and not reaped yet
            _stop_group(child)
    return Ended(child.wait(), killed_for, peak)


def _ignore_further_interrupts() -> None:
    """A second Ctrl-C (the terminal's, then the driver's) must not cut the child's clean-up short.
    Only on an interrupt: after our own kill (memory, timeout) the worker, a Ray worker that runs more
    tasks or a test's process, keeps its Ctrl-C (it used to be ignored for good after a memory kill)."""
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGINT, signal.SIG_IGN)


def _die_with_parent() -> None:
    """In the child: get SIGTERM when the worker that started it dies (Linux), so no run is orphaned."""
    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
    except OSError:
        pass  # not Linux: the process group is still killed on every path we control


def _tree_rss(pid: int) -> int:
    try:
        root = psutil.Process(pid)
        processes = [root, *root.children(recursive=True)]
    except psutil.NoSuchProcess:
        return 0
    total = 0
    for process in processes:
        try:
            total += process.memory_info().rss
        except psutil.NoSuchProcess:
            continue
    return total


def _kill_group(child: subprocess.Popen, sig: int) -> None:
    try:
        os.killpg(child.pid, sig)
    except ProcessLookupError:
        pass


def _stop_group(child: subprocess.Popen) -> None:
    """SIGTERM (the pipeline turns it into a clean interrupt), then SIGKILL after a grace period."""
    _kill_group(child, signal.SIGTERM)
    try:
        child.wait(GRACE_SECONDS)
    except subprocess.TimeoutExpired:
        _kill_group(child, signal.SIGKILL)


def describe(spec: TaskSpec, ended: Ended, seconds: float) -> TaskResult:
    """A TaskResult from the child's end and, when it wrote one, its report.json."""
    common = dict(model=spec.model.name, arg=spec.model.arg, exit_code=ended.returncode, seconds=round(seconds, 2),
                  peak_rss_mb=round(ended.peak_rss_bytes / 2**20, 1), log=str(spec.log.relative_to(spec.root)),
                  host=socket.gethostname())
    report = read_report(spec.artifacts / "report.json") if ended.killed_for is None else None
    if ended.returncode in REPORTED_EXIT_CODES and report is not None:
        return _from_report(spec, report, common)
    verdict, reason = _failure(spec, ended)
    return TaskResult(verdict=verdict, reason=reason, **common)


def _from_report(spec: TaskSpec, report: dict, common: dict) -> TaskResult:
    conversion = report.get("conversion") or {}
    counts = (report.get("lint") or {}).get("counts") or {}
    html = spec.artifacts / "report.html"
    return TaskResult(
        verdict=report.get("verdict", "fail"), reason="; ".join(report.get("verdict_reasons") or [])[:500],
        backends=worst_per_backend(report.get("comparisons") or []), strategy=conversion.get("strategy"),
        exporter=report.get("exporter"), timings=dict(report.get("timings") or {}), lint_errors=counts.get("error"),
        report_html=str(html.relative_to(spec.root)) if html.exists() else None, **common,
    )


def _failure(spec: TaskSpec, ended: Ended) -> tuple[str, str]:
    """Why there is no report: our kill, a signal, or the pipeline's own one-line error."""
    if ended.killed_for == OUT_OF_MEMORY:
        return OUT_OF_MEMORY, (f"killed: its processes used {ended.peak_rss_bytes / 2**30:.2f} GB, over the "
                               f"{spec.memory_limit_bytes / 2**30:.2f} GB memory limit (--memory-gb)")
    if ended.killed_for == TIMEOUT:
        return TIMEOUT, f"killed after the {spec.timeout_s:g} s timeout (--timeout)"
    if ended.returncode < 0:
        name = signal.Signals(-ended.returncode).name
        hint = " (the system's out-of-memory killer?)" if name == "SIGKILL" else ""
        return CRASHED, f"killed by {name}{hint}"
    line = _last_error_line(spec.log)
    if ended.returncode == 130:
        return CRASHED, line or "interrupted"
    return STAGE_FAILED, line or f"exited with code {ended.returncode} without a report; see {spec.log}"


def _last_error_line(log: Path) -> str:
    try:
        lines = log.read_text(errors="replace").splitlines()
    except OSError:
        return ""
    errors = [line.strip() for line in lines if line.startswith(("error:", "interrupted:"))]
    return errors[-1][:500] if errors else ""
