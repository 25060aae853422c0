"""Each conversion attempt in a child process, with a memory and a time limit.

onnx2tf can grow without bound on some graphs (24 GB and an OOM kill of the whole run was
seen on onnx's light_vgg19) or convert for a quarter of an hour. In a child, such an attempt
is stopped, recorded ("strategy X stopped at 12.0 GB / 600 s") and the next strategy gets its
turn; the parent, and the record of what was tried, survive. The child's memory is returned
to the system when it ends.

The limit is watched from the parent (resident memory of the child and its own children, every
0.2 s) rather than set with RLIMIT_AS: TensorFlow reserves far more address space than it uses.

A full run starts its first child before it needs it (`prewarm`: TensorFlow's import overlaps the
export) and keeps it after a successful first conversion, as the run's TF worker
(pipeline/runners/remote.py); the limits apply to the conversion job.
"""
from __future__ import annotations

import contextlib
import gc
import importlib
import multiprocessing
import os
import signal
import tempfile
import time
import traceback
from dataclasses import dataclass
from typing import Any, Callable, Iterator

import psutil

from pipeline import process, profile
from pipeline.errors import ConversionCrashed, ConversionError, RunnerError, first_line

POLL_SECONDS = 0.2
COLLECT_AFTER_SECONDS = 1.0  # a kept child collects garbage after jobs at least this long (conversions, model loads)


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


def run_isolated(fn: Callable[..., Any], args: tuple, limits: Limits, what: str, env: dict[str, str] | None = None) -> Any:
    """fn(*args) in a child process (the prewarmed one if there is one; a new one started with `env` added
    to the environment, if given); its return value, or ConversionError when it raised, ran out of memory
    or time, or died (ConversionCrashed when native code crashed it). Steps the child timed
    (pipeline.profile) join this process's profile."""
    return run_kept(fn, args, limits, what, keep=False, env=env)[0]


def run_kept(fn: Callable[..., Any], args: tuple, limits: Limits, what: str, keep: bool = True,
             env: dict[str, str] | None = None) -> tuple[Any, "Child | None"]:
    """As run_isolated; when fn succeeded and `keep`, the child is not stopped but returned, to serve
    more jobs (Child.call): the TF worker of a full run (pipeline/runners/remote.py)."""
    env = {**_kept_environment, **(env or {})}
    child = Child(env=env) if env else (_spare.take() or Child())
    _running.add(child)
    try:
        child.submit(fn, args)
        kind, value, steps = child.outcome(limits, what)
    finally:
        _running.discard(child)
        if not (keep and child.alive()):
            child.stop()
    profile.absorb(steps)
    if kind == "ok":
        return value, (child if keep and child.alive() else None)
    child.stop()
    if kind == "conversion-error":
        raise ConversionError(value)
    raise (ConversionCrashed if kind == "crashed" else ConversionError)(f"{what}: {value}")


class Child:
    """One spawned process that runs jobs: most run one (a conversion attempt) and are stopped; a full
    run's first is kept as its TF worker (run_kept, Child.call). Started early (`prewarm`), it imports the
    converter's libraries while the parent exports, so a conversion does not wait for TensorFlow's import."""

    def __init__(self, warm: str | None = None, warm_args: tuple = (), env: dict[str, str] | None = None) -> None:
        context = multiprocessing.get_context("spawn")
        self._conn, child_end = context.Pipe()
        self._process = context.Process(target=_child_main, args=(child_end, warm, warm_args), daemon=True)
        # a spawned child starts with the parent's environment as it is now
        with _environment({"TMPDIR": _children_tmp(), **(env or {})}):
            self._process.start()
        child_end.close()

    def alive(self) -> bool:
        return self._process.is_alive()

    def submit(self, fn: Callable[..., Any], args: tuple) -> None:
        self._conn.send((fn, args))

    def outcome(self, limits: Limits, what: str) -> tuple[str, Any, list[dict]]:
        kind, value, *steps = _watch(self._process, self._conn, limits, what)
        return kind, value, (steps[0] if steps else [])

    def call(self, fn: Callable[..., Any], args: tuple) -> Any:
        """fn(*args) in this (kept) child: its value; its RunnerError or ConversionError raised here,
        anything else as a RunnerError naming the worker."""
        self.send(fn, args)
        return self.receive()

    def send(self, fn: Callable[..., Any], args: tuple) -> None:
        """Start fn(*args) in this (kept) child; `receive` waits for it. Jobs run one at a time, in order."""
        try:
            self._conn.send((fn, args))
        except (EOFError, OSError, BrokenPipeError):
            raise self._ended() from None

    def receive(self) -> Any:
        """The value of the job sent first and not yet received, as `call` returns it."""
        try:
            kind, value, steps = self._conn.recv()
        except (EOFError, OSError, BrokenPipeError):
            raise self._ended() from None
        profile.absorb(steps)
        if kind == "ok":
            return value
        if kind in ("conversion-error", "crashed"):
            raise (ConversionCrashed if kind == "crashed" else ConversionError)(value)
        raise RunnerError(value)

    def _ended(self) -> Exception:
        return RunnerError(f"the TensorFlow worker process ended (exit code {self._process.exitcode}); see tf_worker.log")

    def stop(self) -> None:
        _stop(self._process)
        self._conn.close()


_spare: process.Spare[Child] = process.Spare()
_running: set[Child] = set()
_tmp: list[tempfile.TemporaryDirectory] = []  # the children's folder, made at the first child


def _children_tmp() -> str:
    """The children's temporary folder (their TMPDIR), removed when this process exits. A child is
    stopped with SIGKILL, so its exit handlers never run: what TensorFlow leaves for them to delete
    (AutoGraph's __autograph_generated_file*.py, one or two per run) would otherwise stay in /tmp."""
    if not _tmp:
        _tmp.append(tempfile.TemporaryDirectory(prefix="pipeline-children-", ignore_cleanup_errors=True))
    return _tmp[0].name


def prewarm(warm_up: str, *args: Any) -> None:
    """Start a child that imports `warm_up` (`module`, or `module:function` to call with `args` after the
    import) and waits for a job; the next run_isolated uses it. Safe to call more than once."""
    _spare.keep(lambda: Child(warm_up, args))


_kept_environment: dict[str, str] = {}


def keep_environment(added: dict[str, str]) -> None:
    """Every child started from now on in this process (the run of one model) gets `added` in its
    environment: after a conversion needed oneDNN off, its layer model and fp16 cure need it too. A
    prewarmed child, started without it, is stopped."""
    _kept_environment.update(added)
    _spare.discard()


def discard_spare() -> None:
    """Stop a prewarmed child that no job will use (the run ended early)."""
    _spare.discard()


def stop_running() -> None:
    """Kill the children of conversions still running (a run that ends before it needs them)."""
    for child in list(_running):
        _stop(child._process)  # noqa: SLF001 (the watcher then reports the child as dead)


def _child_main(conn, warm: str | None, warm_args: tuple) -> None:
    """The child process: Ctrl-C is its parent's to handle (process.leave_interrupts_to_parent), then `_serve`."""
    process.leave_interrupts_to_parent()
    _serve(conn, warm, warm_args)


def _serve(conn, warm: str | None, warm_args: tuple = ()) -> None:
    """Import `warm` (and call its function with `warm_args`, if it names one), then run jobs until the
    parent closes the pipe (most children get one job)."""
    if warm:
        with profile.step("convert: child imports (during export)"):
            module, _, function = warm.partition(":")
            imported = importlib.import_module(module)
            if function:
                getattr(imported, function)(*warm_args)
        # what the imports made goes out of the collector's reach (seed_ym's conversion 2.2-2.35 -> 1.9-2.0 s,
        # the collection after it 0.19 -> 0.01 s)
        process.own()
    sent = 0
    while True:
        try:
            fn, args = conn.recv()
        except (EOFError, OSError):  # the parent is done with this child
            return
        started = time.monotonic()
        try:
            result = ("ok", fn(*args))
        except ConversionCrashed as exc:  # a process of its own crashed (onnx2tf 2.x's): as if this child had
            result = ("crashed", str(exc))
        except ConversionError as exc:
            result = ("conversion-error", str(exc))
        except RunnerError as exc:
            result = ("error", str(exc))
        except BaseException as exc:  # anything else is reported to the parent as one line, with where it came from
            result = ("error", f"{type(exc).__name__}: {first_line(exc)} ({traceback.format_exc(limit=-1).splitlines()[-3].strip()})")
        conn.send((*result, profile.taken(sent)))
        sent = profile.mark()
        result = None
        if time.monotonic() - started >= COLLECT_AFTER_SECONDS:
            # a kept worker: a long job's objects (onnx2tf's graph, TF's reference cycles) make room for the next;
            # after every job, a collection (0.1-0.2 s with TensorFlow loaded) would cost more than a small model's audit
            gc.collect()


def _watch(child, conn, limits: Limits, what: str) -> tuple[str, Any]:
    start, peak = time.monotonic(), 0
    while True:
        if conn.poll(POLL_SECONDS):
            try:
                return conn.recv()
            except (EOFError, OSError):  # the child ended (or was stopped) while its answer was due
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
    if child.exitcode is not None and -child.exitcode in process.CRASH_SIGNALS:
        name = signal.Signals(-child.exitcode).name
        return "crashed", f"the conversion process crashed in native code (signal {-child.exitcode}, {name}) at {peak / 2**30:.1f} GB"
    return "died", f"the conversion process died (exit code {child.exitcode}) at {peak / 2**30:.1f} GB"


@contextlib.contextmanager
def _environment(added: dict[str, str]) -> Iterator[None]:
    saved = {name: os.environ.get(name) for name in added}
    os.environ.update(added)
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def _resident(pid: int) -> int:
    try:
        process = psutil.Process(pid)
        return process.memory_info().rss + sum(c.memory_info().rss for c in process.children(recursive=True))
    except psutil.Error:  # the process ended between two looks
        return 0


def _stop(child) -> None:
    if child.pid is not None and child.is_alive():
        for member in _family(child.pid):
            with contextlib.suppress(psutil.NoSuchProcess):  # it ended since it was listed
                member.kill()
    child.join(5)


def _family(pid: int) -> list:
    try:
        parent = psutil.Process(pid)
        return parent.children(recursive=True) + [parent]
    except psutil.Error:
        return []
