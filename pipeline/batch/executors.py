"""Two executors for the same task function: a local process pool, and Ray tasks.

Neither schedules anything itself. The local pool runs `jobs` tasks at a time, one fresh
worker process per task. Ray places each task where its resources (one CPU, the task's
memory request) are free, on this machine or on a cluster. A worker that dies under a task
(killed, or taken by the system's out-of-memory killer) gets the task retried once.
"""
from __future__ import annotations

import logging
import multiprocessing
import os
import signal
from concurrent.futures import Future, ProcessPoolExecutor, as_completed
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Protocol, Sequence

from pipeline.batch.result import CRASHED, WORKER_LOST, TaskResult
from pipeline.batch.task import GRACE_SECONDS, STOP_FILE, TaskSpec
from pipeline.errors import UsageError, first_line

TaskFn = Callable[[TaskSpec], TaskResult]
OnDone = Callable[[TaskResult], None]
MAX_ATTEMPTS = 2  # a lost worker is retried once
RAY_INSTALL_HINT = ("--executor ray needs Ray, an optional extra: run `make venv` (it installs requirements-batch.txt) "
                    "or `pip install -r requirements-batch.txt`")


class Executor(Protocol):
    name: str
    jobs: int

    def run(self, task: TaskFn, specs: Sequence[TaskSpec], on_done: OnDone) -> None:
        """Run task on every spec; call on_done with each result as it arrives."""


def lost(spec: TaskSpec, attempts: int, cause: str) -> TaskResult:
    return TaskResult(model=spec.model.name, arg=spec.model.arg, verdict=WORKER_LOST, exit_code=None, seconds=0.0,
                      reason=f"the worker running it died {attempts} times ({cause})", attempts=attempts)


def raised(spec: TaskSpec, exc: BaseException) -> TaskResult:
    """The task function itself raised: a bug of ours, recorded rather than ending the batch."""
    return TaskResult(model=spec.model.name, arg=spec.model.arg, verdict=CRASHED, exit_code=None, seconds=0.0,
                      reason=f"the batch task raised {type(exc).__name__}: {first_line(exc)}")


@dataclass(frozen=True)
class LocalExecutor:
    """A process pool on this machine: `jobs` workers, each used for one task only."""

    jobs: int
    name: str = "local"

    def run(self, task: TaskFn, specs: Sequence[TaskSpec], on_done: OnDone) -> None:
        attempts = {spec.model.name: 0 for spec in specs}
        pending = list(specs)
        while pending:
            for spec in pending:
                attempts[spec.model.name] += 1
            broken = self._round(task, pending, attempts, on_done)
            for spec in broken:
                if attempts[spec.model.name] >= MAX_ATTEMPTS:
                    on_done(lost(spec, attempts[spec.model.name], "BrokenProcessPool"))
            pending = [spec for spec in broken if attempts[spec.model.name] < MAX_ATTEMPTS]

    def _round(self, task: TaskFn, specs: list[TaskSpec], attempts: dict[str, int], on_done: OnDone) -> list[TaskSpec]:
        """Submit specs to a fresh pool; return those lost with a broken pool."""
        broken: list[TaskSpec] = []
        # spawn: max_tasks_per_child needs it, and a worker must not inherit the driver's threads.
        pool = ProcessPoolExecutor(max_workers=min(self.jobs, len(specs)), max_tasks_per_child=1,
                                   mp_context=multiprocessing.get_context("spawn"))
        futures: dict[Future, TaskSpec] = {}
        try:
            futures.update({pool.submit(task, spec): spec for spec in specs})
            for future in as_completed(futures):
                spec = futures[future]
                try:
                    on_done(future.result().retried(attempts[spec.model.name]))
                except BrokenProcessPool:
                    broken.append(spec)
                except Exception as exc:  # the task function failed for this model only
                    on_done(raised(spec, exc))
        except BaseException:
            _stop_workers(pool, futures, specs[0].root / STOP_FILE)
            raise
        pool.shutdown(wait=True)
        return broken


def _stop_workers(pool: ProcessPoolExecutor, futures: dict[Future, TaskSpec], stop_file: Path) -> None:
    """Ctrl-C or SIGTERM: interrupt running workers, which stop their runs cleanly (task.supervise);
    a worker still alive after the grace period is killed and its run follows it (task._die_with_parent).
    The stop file turns tasks the pool still hands out into no-ops, so the pool drains at once.
    concurrent.futures has no public call for stopping running workers before Python 3.14."""
    stop_file.touch()
    for future in futures:
        future.cancel()
    workers = list((getattr(pool, "_processes", None) or {}).values())
    for process in workers:
        if process.is_alive():
            os.kill(process.pid, signal.SIGINT)
    for process in workers:
        process.join(GRACE_SECONDS + 5)
        if process.is_alive():
            process.kill()
    pool.shutdown(wait=True, cancel_futures=True)
    stop_file.unlink(missing_ok=True)


@dataclass(frozen=True)
class RayExecutor:
    """Ray tasks: `ray.init()` with `jobs` CPUs on this machine, or `ray.init(address=...)` for a cluster."""

    jobs: int
    address: str | None = None
    name: str = "ray"

    def run(self, task: TaskFn, specs: Sequence[TaskSpec], on_done: OnDone) -> None:
        ray = import_ray()
        started = self._connect(ray)
        try:
            self._run(ray, task, specs, on_done)
        finally:
            if started:
                ray.shutdown()

    def _connect(self, ray) -> bool:
        """Join the running Ray instance (a test's, or a cluster's), else start one. True when we started it."""
        if ray.is_initialized():
            return False
        os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")  # nothing leaves the machine at run time
        on_sigterm = signal.getsignal(signal.SIGTERM)
        if self.address:
            ray.init(address=self.address, log_to_driver=False, logging_level=logging.ERROR)
        else:
            ray.init(num_cpus=self.jobs, include_dashboard=False, log_to_driver=False, logging_level=logging.ERROR)
        if callable(on_sigterm):  # Ray's driver exits on SIGTERM; ours records what finished first
            signal.signal(signal.SIGTERM, on_sigterm)
        return True

    def _run(self, ray, task: TaskFn, specs: Sequence[TaskSpec], on_done: OnDone) -> None:
        # max_retries=1: Ray itself resubmits a task whose worker died, once.
        _check_fits(ray, specs)
        remote = ray.remote(task)
        refs = {remote.options(num_cpus=1, memory=spec.memory_request_bytes, max_retries=MAX_ATTEMPTS - 1,
                               retry_exceptions=False).remote(spec): spec for spec in specs}
        try:
            while refs:
                done, _ = ray.wait(list(refs), num_returns=1)
                for ref in done:
                    on_done(_ray_result(ray, ref, refs.pop(ref)))
        except BaseException:
            _cancel(ray, list(refs))
            raise


def _cancel(ray, refs: list) -> None:
    """Interrupt running tasks (KeyboardInterrupt in the worker: task.supervise stops its run cleanly),
    then force the stragglers: Ray kills a forced worker's child processes outright."""
    for ref in refs:
        ray.cancel(ref, force=False)
    _, stragglers = ray.wait(refs, num_returns=len(refs), timeout=GRACE_SECONDS + 5)
    for ref in stragglers:
        ray.cancel(ref, force=True)


def _check_fits(ray, specs: Sequence[TaskSpec]) -> None:
    """Ray would wait forever for a task that asks for more memory than the cluster has: refuse it now."""
    available = ray.cluster_resources().get("memory", 0.0)
    too_big = [s for s in specs if s.memory_request_bytes > available]
    if too_big:
        names = ", ".join(f"{s.model.name} ({s.memory_request_bytes / 2**30:.1f} GB)" for s in too_big)
        raise UsageError(f"--memory-gb: {names} asks for more memory than the Ray cluster has "
                         f"({available / 2**30:.1f} GB); lower it or add a bigger node")


def _ray_result(ray, ref, spec: TaskSpec) -> TaskResult:
    try:
        return ray.get(ref)
    except (ray.exceptions.WorkerCrashedError, ray.exceptions.NodeDiedError) as exc:
        return lost(spec, MAX_ATTEMPTS, type(exc).__name__)
    except ray.exceptions.RayTaskError as exc:
        return raised(spec, exc.cause if getattr(exc, "cause", None) else exc)


def import_ray():
    try:
        import ray
    except ImportError:
        raise UsageError(RAY_INSTALL_HINT) from None
    return ray


def make_executor(name: str, jobs: int, address: str | None) -> Executor:
    if name == "ray":
        import_ray()  # fail before any work starts
        return RayExecutor(jobs, address)
    if address:
        raise UsageError("--address is for --executor ray; the local executor runs on this machine")
    return LocalExecutor(jobs)
