"""Terminal output: one rich console that survives log capture.

Third-party libraries (torch.onnx, onnx2tf, TensorFlow) print freely to stdout and
stderr, at the Python and at the C level. `capture_output` sends all of that to a
log file; the console keeps a duplicate of the original stderr so progress and
results still reach the user.
"""
from __future__ import annotations

import contextlib
import os
import sys
from pathlib import Path
from typing import Iterator

from rich.console import Console

_terminal = os.fdopen(os.dup(2), "w", buffering=1, closefd=True)
# Diagnostics (progress, stage lines, warnings) go to stderr, through a duplicate that survives
# capture_output; results (the summary, the where: lines, the verdict) go to stdout, looked up when
# printed, and are never printed while a stage's output is captured.
console = Console(file=_terminal, highlight=False, width=None if _terminal.isatty() else 120)
results = Console(highlight=False, width=None if sys.stdout.isatty() else 120)


@contextlib.contextmanager
def capture_output(log_path: Path) -> Iterator[None]:
    """Send this process's stdout and stderr into log_path, at the C level and at the
    Python level (the latter also when sys.stdout was replaced, e.g. under pytest)."""
    sys.stdout.flush()
    sys.stderr.flush()
    saved = os.dup(1), os.dup(2)
    with open(log_path, "ab") as log, open(log_path, "a", buffering=1) as text_log:
        os.dup2(log.fileno(), 1)
        os.dup2(log.fileno(), 2)
        try:
            with contextlib.redirect_stdout(text_log), contextlib.redirect_stderr(text_log):
                yield
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)
            os.close(saved[0])
            os.close(saved[1])


@contextlib.contextmanager
def stage_status(title: str) -> Iterator[None]:
    """A spinner with the stage name while it runs, then a one-line 'done' mark."""
    if console.is_terminal:
        with console.status(f"[bold]{title}[/]…"):
            yield
    else:
        console.print(f"… {title}")
        yield
