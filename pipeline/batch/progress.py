"""Batch progress on the terminal: models done, running and failed, and one line per finished model."""
from __future__ import annotations

from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

from pipeline.batch.result import TaskResult
from pipeline.console import console

STYLES = {"pass": "green", "fail": "bold red", "inconclusive": "yellow"}


class BatchProgress:
    """A progress bar with done / running / failed counts (a plain line per model off a terminal)."""

    def __init__(self, total: int, already_done: int, jobs: int) -> None:
        self.total, self.done, self.failed, self.jobs = total, already_done, 0, jobs
        self._bar = Progress(TextColumn("[bold]batch"), BarColumn(), TextColumn("{task.description}"),
                             TimeElapsedColumn(), console=console, disable=not console.is_terminal)
        self._task = self._bar.add_task(self._counts(), total=total, completed=already_done)

    def __enter__(self) -> "BatchProgress":
        self._bar.__enter__()
        return self

    def __exit__(self, *exc) -> None:
        self._bar.__exit__(*exc)

    @property
    def running(self) -> int:
        return min(self.jobs, self.total - self.done)

    def _counts(self) -> str:
        return f"{self.done}/{self.total} done, {self.running} running, {self.failed} failed"

    def finished(self, result: TaskResult) -> None:
        self.done += 1
        self.failed += result.verdict not in ("pass", "inconclusive")  # a failed audit, or no report
        style = STYLES.get(result.verdict, "bold red")
        reason = f": {result.reason}" if result.verdict != "pass" and result.reason else ""
        console.print(f"[{style}]{result.verdict}[/] {result.model} ({result.seconds:.0f} s){reason}"
                      f"  [dim][{self._counts()}][/]", soft_wrap=True)
        self._bar.update(self._task, completed=self.done, description=self._counts())
