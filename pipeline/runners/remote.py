"""TensorFlow's runners in the TF worker: a full run's conversion child, kept after it converted.

A full run's parent process never imports TensorFlow. The conversion child already has it, and
after its conversion it stays: the SavedModel and Keras runners (the layout probe, the audit, the
layer-by-layer pass) and the TF-side lint's graph reader run there, on the files in the artifact
folder, and send arrays back. TensorFlow's import (about 3 s) and its memory (about 0.5 GB) are
paid once per run instead of twice, and the parent never holds TensorFlow while the child converts.

A RemoteRunner has the Runner interface: the comparisons cannot tell it from a local runner. The
audit sends the runners a RemoteRunner stands for to the worker whole, as one job (`start`), and
runs LiteRT and the float64 oracle here while the worker runs them. Without a worker (a stage run alone, or a run whose first conversion failed) everything
runs in this process, as before. TFLite runs here either way: LiteRT needs no TensorFlow.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

from pipeline.inputs import Feed
from pipeline.runners.base import Runner

_worker: list = []  # the kept child (pipeline.convert.isolate.Child), at most one
_active: dict[int, Runner] = {}  # in the worker: the runners it has activated, by key
LOG = "tf_worker.log"


def attach(child, log: Path) -> None:
    """Use `child` as the TF worker from now on; its own output goes to `log`."""
    detach()
    child.call(_log_to, (str(log),))
    _worker.append(child)


def detach() -> None:
    """Stop the worker (the end of a run)."""
    while _worker:
        _worker.pop().stop()


def attached() -> bool:
    return bool(_worker)


def wrap(runner: Runner) -> Runner:
    """The runner itself, or, when it needs TensorFlow and a worker is attached, a stand-in that runs it there."""
    if _worker and getattr(runner, "needs_tensorflow", False):
        return RemoteRunner(runner, _worker[0])
    return runner


def call(fn: Callable[..., Any], *args: Any) -> Any:
    """fn(*args) in the worker if there is one, else here. fn must be importable (a module-level function)."""
    return _worker[0].call(fn, args) if _worker else fn(*args)


def start(fn: Callable[..., Any], *args: Any) -> Callable[[], Any]:
    """fn(*args) started in the worker if there is one (else run here now); call the returned function for
    its value. Until then the worker is busy: no other call may go to it in between."""
    if not _worker:
        value = fn(*args)
        return lambda: value
    _worker[0].send(fn, args)
    return _worker[0].receive


def local_runner(runner: Runner) -> Runner | None:
    """The runner a RemoteRunner stands for (to send it to the worker whole); None for any other runner."""
    return runner._local if isinstance(runner, RemoteRunner) else None  # noqa: SLF001


class RemoteRunner(Runner):
    def __init__(self, local: Runner, worker) -> None:
        super().__init__(local.input_specs, local.output_names)
        self.name, self.precision, self.partial_outputs = local.name, local.precision, local.partial_outputs
        self._local, self._worker, self._key = local, worker, None

    def _activate_impl(self) -> None:
        self._key = self._worker.call(_activate, (self._local,))

    def _infer_impl(self, feed: Feed) -> Feed:
        return self._worker.call(_infer, (self._key, feed))

    def _deactivate_impl(self) -> None:
        if self._key is not None:
            self._worker.call(_deactivate, (self._key,))
            self._key = None


# In the worker.

def _log_to(path: str) -> None:
    import os
    import sys

    sys.stdout.flush()
    sys.stderr.flush()
    log = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    os.dup2(log, 1)
    os.dup2(log, 2)
    os.close(log)


def _activate(runner: Runner) -> int:
    runner.activate()
    _active[id(runner)] = runner
    return id(runner)


def _infer(key: int, feed: Feed) -> Feed:
    return _active[key].infer(feed)


def _deactivate(key: int) -> None:
    _active.pop(key).deactivate()
