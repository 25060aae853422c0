"""Each conversion attempt in a child process, with a memory and a time limit.

onnx2tf can grow without bound on some graphs (24 GB and an OOM kill of the whole run was
seen on onnx's light_vgg19) or convert for a quarter of an hour. In a child, such an attempt
is stopped, recorded ("strategy X stopped at 12.0 GB / 600 s") and the next strategy gets its
turn; the parent, and the record of what was tried, survive. The child's memory is returned
to the system when it ends.

The limit is watched from the parent (resident memory of the child and its own children, every
0.2 s) rather than set with RLIMIT_AS: TensorFlow reserves far more address space than it uses.
"""
from __future__ import annotations

import multiprocessing
import time
import traceback
from dataclasses import dataclass
from typing import Any, Callable

import psutil

from pipeline.errors import ConversionError, first_line

POLL_SECONDS = 0.2


@dataclass(frozen=True)
class Limits:
    memory_bytes: int
    seconds: float

    @classmethod
    def of(cls, memory_fraction: float, seconds: float) -> "Limits":
        """A share of this machine's RAM, and a time limit per attempt."""
        return cls(int(psutil.virtual_memory().total * memory_fraction), seconds)

    def describe(self) -> str:
        return f"{self.memory_bytes / 2**30:.1f} GB / {self.seconds:g} s"


def run_isolated(fn: Callable[..., Any], args: tuple, limits: Limits, what: str) -> Any:
    """fn(*args) in a fresh child process; its return value, or ConversionError when it raised,
    ran out of memory or time, or died."""
    context = multiprocessing.get_context("spawn")
    parent_end, child_end = context.Pipe(duplex=False)
    child = context.Process(target=_child, args=(child_end, fn, args), daemon=True)
    try:
        child.start()
        child_end.close()
        outcome = _watch(child, parent_end, limits, what)
    finally:
        _stop(child)
        parent_end.close()
    kind, value = outcome
    if kind == "ok":
        return value
    if kind == "conversion-error":
        raise ConversionError(value)
    raise ConversionError(f"{what}: {value}")


def _child(conn, fn: Callable[..., Any], args: tuple) -> None:
    try:
        result = ("ok", fn(*args))
    except ConversionError as exc:
        result = ("conversion-error", str(exc))
    except BaseException as exc:  # anything else is reported to the parent as one line, with where it came from
        result = ("error", f"{type(exc).__name__}: {first_line(exc)} ({traceback.format_exc(limit=-1).splitlines()[-3].strip()})")
    conn.send(result)
    conn.close()


def _watch(child, conn, limits: Limits, what: str) -> tuple[str, Any]:
    start, peak = time.monotonic(), 0
    while True:
        if conn.poll(POLL_SECONDS):
            try:
                return conn.recv()
            except EOFError:
                break
        peak = max(peak, _resident(child.pid))
        elapsed = time.monotonic() - start
        if peak > limits.memory_bytes:
            return "stopped", (f"stopped at {peak / 2**30:.1f} GB after {elapsed:.0f} s: over the memory limit "
                               f"({limits.describe()}); raise convert.memory_fraction in the config to allow more")
        if elapsed > limits.seconds:
            return "stopped", (f"stopped at {elapsed:.0f} s ({peak / 2**30:.1f} GB): over the time limit "
                               f"({limits.describe()}); raise convert.seconds in the config to allow more")
        if not child.is_alive() and not conn.poll(0):
            break
    child.join(1)
    return "died", f"the conversion process died (exit code {child.exitcode}) at {peak / 2**30:.1f} GB"


def _resident(pid: int) -> int:
    try:
        process = psutil.Process(pid)
        return process.memory_info().rss + sum(c.memory_info().rss for c in process.children(recursive=True))
    except psutil.Error:  # the process ended between two looks
        return 0


def _stop(child) -> None:
    if child.pid is not None and child.is_alive():
        for process in _family(child.pid):
            process.kill()
    child.join(5)


def _family(pid: int) -> list:
    try:
        parent = psutil.Process(pid)
        return parent.children(recursive=True) + [parent]
    except psutil.Error:
        return []
