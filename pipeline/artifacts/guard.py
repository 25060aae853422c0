"""Keeping a team's last good artifacts safe from failed, interrupted and concurrent runs.

- A full run (`convert`) builds a fresh folder beside the artifact folder and swaps it in
  only when every stage finished; a failure or Ctrl-C leaves the old folder as it was.
- A lock file beside the artifact folder stops a second run on the same folder.
- SIGTERM is turned into KeyboardInterrupt, so the same clean-up runs for both; both are recorded,
  so an interrupt that a library swallowed, or an error raised while stopping, still ends as one.
"""
from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import shutil
import signal
import sys
from pathlib import Path
from typing import Iterator

from pipeline.artifacts.folder import ArtifactDir, replace_dir
from pipeline.errors import EXIT_BUSY, PipelineError

KEPT_ON_FAILURE = ("convert.failed.log", "export.failed.log")


class BusyError(PipelineError):
    """Another run holds the artifact folder's lock."""

    exit_code = EXIT_BUSY


@contextlib.contextmanager
def locked(root: Path) -> Iterator[None]:
    """Hold `.<folder>.lock` beside the artifact folder for the whole run, or refuse at once.
    The lock file is removed when the run ends, so no lock files pile up beside the folders."""
    root.parent.mkdir(parents=True, exist_ok=True)
    lock_path = root.with_name(f".{root.name}.lock")
    handle = _acquire(lock_path, root)
    try:
        handle.seek(0)
        handle.truncate()
        handle.write(str(os.getpid()))
        handle.flush()
        yield
    finally:
        lock_path.unlink(missing_ok=True)  # still held: a run that opened it before sees the change and retries
        handle.close()


def _acquire(lock_path: Path, root: Path):
    """The open, locked lock file; retried when the file was removed by the run that held it."""
    while True:
        handle = open(lock_path, "a+")
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            handle.seek(0)
            holder = handle.read().strip() or "unknown"
            handle.close()
            if exc.errno not in (errno.EAGAIN, errno.EACCES):
                raise
            raise BusyError(f"{root}: another run (pid {holder}) is writing this artifact folder; "
                            "wait for it to finish or pass another --out") from None
        if _same_file(handle, lock_path):
            return handle
        handle.close()  # locked a file its holder had just removed: take the new one


def _same_file(handle, path: Path) -> bool:
    try:
        return os.stat(path).st_ino == os.fstat(handle.fileno()).st_ino
    except FileNotFoundError:
        return False


@contextlib.contextmanager
def fresh_folder(final: ArtifactDir) -> Iterator[ArtifactDir]:
    """A new folder for a full run, swapped in for `final` only when the run succeeds."""
    _remove_leftovers(final.root)
    work = final.root.with_name(f".{final.root.name}.run-{os.getpid()}")
    work.mkdir(parents=True)
    try:
        yield ArtifactDir(work, final=final.root)
        raise_if_interrupted()
    except BaseException:
        _keep_failure_logs(work, final.root)
        shutil.rmtree(work, ignore_errors=True)
        raise
    replace_dir(work, final.root)


def _remove_leftovers(target: Path) -> None:
    """Folders of runs that were killed outright (SIGKILL, power loss). The caller holds the
    lock, so no live run owns them."""
    for pattern in (f".{target.name}.run-*", f".{target.name}.old-*"):
        for leftover in target.parent.glob(pattern):
            shutil.rmtree(leftover, ignore_errors=True)


def _keep_failure_logs(work: Path, target: Path) -> None:
    """The failing run's logs help; they go beside the intact artifacts under their own names."""
    for name in KEPT_ON_FAILURE:
        log = work / name
        if log.exists():
            target.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(log, target / name)


_INTERRUPTED: list[int] = []  # the signals received; a library that swallows the KeyboardInterrupt cannot hide them
INTERRUPT_SIGNALS = (signal.SIGINT, signal.SIGTERM)


@contextlib.contextmanager
def signals_as_interrupt() -> Iterator[None]:
    """Ctrl-C and SIGTERM raise KeyboardInterrupt, and are recorded (`interrupted`) for this run."""
    _INTERRUPTED.clear()

    def handler(signum, frame):
        _INTERRUPTED.append(signum)
        raise KeyboardInterrupt(f"signal {signum}")

    hook = sys.unraisablehook

    def unraisable(info) -> None:
        if not (_INTERRUPTED and info.exc_type is KeyboardInterrupt):
            hook(info)
        # else: the interrupt landed in a callback Python cannot raise from (a weakref's, during garbage
        # collection); it is recorded, and raise_if_interrupted stops the run at the next check

    previous = {number: signal.signal(number, handler) for number in INTERRUPT_SIGNALS}
    sys.unraisablehook = unraisable
    try:
        yield
    finally:
        sys.unraisablehook = hook
        for number, earlier in previous.items():
            signal.signal(number, earlier)


def interrupted() -> bool:
    """Whether Ctrl-C or SIGTERM arrived: an error that surfaces afterwards happened while stopping."""
    return bool(_INTERRUPTED)


def raise_if_interrupted() -> None:
    """Raise KeyboardInterrupt if Ctrl-C or SIGTERM arrived, even one whose KeyboardInterrupt some library
    code (TensorFlow, mid-call) caught: checked between stages and before the folder swap, so an
    interrupted run never goes on, nor commits."""
    if _INTERRUPTED:
        raise KeyboardInterrupt(f"signal {_INTERRUPTED[-1]}")
