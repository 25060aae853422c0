"""`python -m pipeline batch`: expand the models, skip finished ones (--resume), run the rest on an
executor, record each result as it arrives, and write the zoo report."""
from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

from pipeline.artifacts.folder import DEFAULT_ROOT, ArtifactDir
from pipeline.artifacts.guard import locked
from pipeline.batch.executors import TaskFn, make_executor
from pipeline.batch.limits import MemoryPlan, default_jobs
from pipeline.batch.models import expand_models
from pipeline.batch.progress import BatchProgress
from pipeline.batch.report import BatchSummary, write_reports
from pipeline.batch.result import TaskResult
from pipeline.batch.resume import completed, stack_versions, write_marker
from pipeline.batch.task import STOP_FILE, TaskSpec, run_task
from pipeline.console import console
from pipeline.errors import (
    EXIT_AUDIT_FAILED, EXIT_INCONCLUSIVE, EXIT_INTERRUPTED, EXIT_PASS, EXIT_STAGE_FAILED,
)

DEFAULT_TIMEOUT_S = 1800.0


@dataclass(frozen=True)
class BatchRequest:
    """What `batch` was asked for."""

    models: tuple[str, ...]
    executor: str = "local"
    jobs: int | None = None  # default: from the cores and memory
    address: str | None = None
    out: Path | None = None  # the batch folder: one artifact folder per model, the batch report, logs/
    resume: bool = False
    timeout_s: float = DEFAULT_TIMEOUT_S
    memory: MemoryPlan = MemoryPlan()


def run_batch(request: BatchRequest, task: TaskFn = run_task) -> int:
    """Run every model; the exit code summarises them (see batch_exit_code)."""
    root = ArtifactDir((request.out or DEFAULT_ROOT).resolve())
    models = expand_models(list(request.models))
    root.ensure_writable()
    jobs = request.jobs or default_jobs(request.memory)
    executor = make_executor(request.executor, jobs, request.address)
    specs = [TaskSpec(m, root.root, request.timeout_s, request.memory.limit_bytes(m.name),
                      request.memory.request_bytes(m.name)) for m in models]
    with locked(root.root / "_batch"):  # one batch at a time per folder
        return _run(request, specs, executor, task)


def _run(request: BatchRequest, specs: list[TaskSpec], executor, task: TaskFn) -> int:
    versions = stack_versions()
    (specs[0].root / STOP_FILE).unlink(missing_ok=True)  # left by an interrupted batch
    results: dict[str, TaskResult] = {}
    if request.resume:
        results = {s.model.name: r for s in specs if (r := completed(s, versions)) is not None}
    resumed = frozenset(results)
    todo = [s for s in specs if s.model.name not in resumed]
    by_name = {s.model.name: s for s in specs}
    console.print(f"batch: {len(specs)} models, {len(resumed)} already complete, {len(todo)} to run on the "
                  f"{executor.name} executor with {executor.jobs} job(s)")
    start, interrupted = time.perf_counter(), False
    with BatchProgress(len(specs), len(resumed), executor.jobs) as progress:
        def on_done(result: TaskResult) -> None:
            write_marker(by_name[result.model], result, versions)
            results[result.model] = result
            progress.finished(result)

        try:
            executor.run(task, todo, on_done)
        except KeyboardInterrupt:
            interrupted = True
    summary = BatchSummary(executor.name, executor.jobs, time.perf_counter() - start,
                           tuple(results[s.model.name] for s in specs if s.model.name in results), resumed, interrupted)
    return _finish(summary, specs[0].root)


def _finish(summary: BatchSummary, root: Path) -> int:
    paths = write_reports(summary, root)
    console.print(f"batch: {', '.join(f'{n} {k}' for k, n in summary.counts.items())}; report: {paths['html']}")
    if summary.interrupted:
        console.print("interrupted: finished models are recorded; rerun with --resume to run only the rest")
        return EXIT_INTERRUPTED
    return batch_exit_code(summary.results)


def batch_exit_code(results: tuple[TaskResult, ...]) -> int:
    """1 if any model failed its audit, else 3 if any has no report (crash, timeout, memory, stage),
    else 4 if any is inconclusive, else 0."""
    verdicts = {r.verdict for r in results}
    if "fail" in verdicts:
        return EXIT_AUDIT_FAILED
    if any(not r.has_report for r in results):
        return EXIT_STAGE_FAILED
    return EXIT_INCONCLUSIVE if "inconclusive" in verdicts else EXIT_PASS
