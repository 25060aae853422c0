"""What the pipeline does to its own process: only when it owns it (`python -m pipeline`), never when a
test or another program calls it in theirs; what a helper process does with Ctrl-C; and a helper
process started ahead of its job (`Spare`)."""
from __future__ import annotations

import contextlib
import gc
import signal
from typing import Callable, Generic, Iterator, Protocol, TypeVar

_owned = False
# Signals a crash in native code ends a process with; a kill (ours, on a limit or at the end of a run) is not one.
CRASH_SIGNALS = frozenset({signal.SIGSEGV, signal.SIGABRT, signal.SIGBUS, signal.SIGILL, signal.SIGFPE})


def own() -> None:
    """This process is the pipeline's (pipeline/__main__.py, a conversion child once it has imported TensorFlow)."""
    global _owned
    _owned = True
    settle()


def settle() -> None:
    """After large imports: what they made lives as long as the process, so it goes out of the collector's
    reach, and a full collection walks only what the run makes (measured on seed_ym: its export 2.25 ->
    2.0 s with torch, torch.export and onnxscript settled). Nothing in a process the pipeline does not own."""
    if _owned:
        gc.freeze()


# A young-generation collection every this many allocations (Python's default: 700) while a block of many
# short-lived objects runs (fewer_collections).
YOUNG_THRESHOLD = 10_000


@contextlib.contextmanager
def fewer_collections() -> Iterator[None]:
    """Inside the block, the collector runs after YOUNG_THRESHOLD allocations instead of 700, in a process the
    pipeline owns. torch.onnx.export makes millions of objects: at the default, 450 young collections and 3
    full ones took 0.25 s of RegNet-400MF's export, 0.1 s after this. Garbage in reference cycles waits a little
    longer to be freed; nothing else changes. The thresholds are restored after the block."""
    if not _owned:
        yield
        return
    before = gc.get_threshold()
    gc.set_threshold(YOUNG_THRESHOLD, *before[1:])
    try:
        yield
    finally:
        gc.set_threshold(*before)


def leave_interrupts_to_parent() -> None:
    """In a helper process (the conversion child, which becomes the TF worker): ignore SIGINT, as its own
    helpers then do (the ignored disposition is inherited: onnx2tf's onnxsim worker).

    Ctrl-C in a terminal sends SIGINT to the whole process group, SIGTERM from `kill` reaches the parent
    alone. The parent turns either into one clean stop and stops its helpers itself (artifacts/guard.py,
    convert/isolate.py). A helper that took the SIGINT too would print a KeyboardInterrupt traceback over
    the parent's one line, or, in the middle of a TensorFlow call that catches it, swallow it and go on
    with its job; ignoring it makes Ctrl-C end a run exactly as SIGTERM does."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)


class Stoppable(Protocol):
    def alive(self) -> bool: ...

    def stop(self) -> None: ...


P = TypeVar("P", bound=Stoppable)


class Spare(Generic[P]):
    """At most one process started ahead of the job that will use it, so that its start-up (imports) runs
    while something else does: the conversion child (convert/isolate.py), onnx2tf's onnxsim worker."""

    def __init__(self) -> None:
        self.held: P | None = None

    def keep(self, start: Callable[[], P]) -> None:
        """Start one with `start` unless one is held already."""
        if self.held is None:
            self.held = start()

    def take(self) -> P | None:
        """The held process for a job, if it is still alive (a dead one is stopped); no longer held."""
        held, self.held = self.held, None
        if held is not None and not held.alive():
            held.stop()
            return None
        return held

    def discard(self) -> None:
        """Stop the held process: no job will use it."""
        held, self.held = self.held, None
        if held is not None:
            held.stop()
