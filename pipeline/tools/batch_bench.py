"""Batch throughput: models/hour for 1 and 2 jobs on the local and Ray executors, and the fixed
costs behind a projection (Ray start, per-task overhead of each executor, TF/torch import).

Each batch runs as a fresh `python -m pipeline batch` process (so Ray's start-up is counted),
the four settings alternate, and their order is reversed every round. Prints a Markdown table.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from pipeline.batch.executors import LocalExecutor, RayExecutor
from pipeline.batch.models import expand_models
from pipeline.batch.result import TaskResult
from pipeline.batch.task import REPO_ROOT, TaskSpec

SETTINGS = (("local", 1), ("local", 2), ("ray", 1), ("ray", 2))
SMALL = ("seed_ym", "stride2_bn_eps", "residual_file")


@dataclass(frozen=True)
class BatchTiming:
    executor: str
    jobs: int
    wall_seconds: float  # the whole command, Python start and Ray start included
    models_per_hour: float  # len(models) over wall_seconds
    task_seconds: float  # sum of the tasks' own seconds
    verdicts: tuple[str, ...]


def time_batch(models: tuple[str, ...], executor: str, jobs: int, out: Path) -> BatchTiming:
    command = [sys.executable, "-m", "pipeline", "batch", *models, "--executor", executor, "--jobs", str(jobs),
               "--out", str(out)]
    start = time.perf_counter()
    subprocess.run(command, cwd=REPO_ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=False)
    wall = time.perf_counter() - start
    results = json.loads((out / "batch.json").read_text())["results"]
    return BatchTiming(executor, jobs, wall, len(results) * 3600 / wall, sum(r["seconds"] for r in results),
                       tuple(r["verdict"] for r in results))


def noop(spec: TaskSpec) -> TaskResult:
    return TaskResult(model=spec.model.name, arg=spec.model.arg, verdict="pass", reason="", exit_code=0, seconds=0.0)


def task_overhead(tasks: int) -> dict[str, float]:
    """Seconds per no-op task on each executor, and Ray's start, with a warm-up run excluded."""
    import ray

    (model,) = expand_models(["seed_ym"])
    with tempfile.TemporaryDirectory() as folder:
        specs = [TaskSpec(model, Path(folder), 60, None) for _ in range(tasks)]
        os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
        start = time.perf_counter()
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
        ray_start = time.perf_counter() - start
        figures = {"ray_init_s": ray_start}
        for name, executor in (("ray", RayExecutor(2)), ("local", LocalExecutor(2))):
            executor.run(noop, specs[:2], lambda r: None)  # warm-up
            start = time.perf_counter()
            executor.run(noop, specs, lambda r: None)
            figures[f"{name}_per_task_s"] = (time.perf_counter() - start) / tasks
        ray.shutdown()
    return figures


def import_seconds(module: str) -> float:
    start = time.perf_counter()
    subprocess.run([sys.executable, "-c", f"import {module}"], check=True, stdout=subprocess.DEVNULL,
                   stderr=subprocess.DEVNULL)
    return time.perf_counter() - start


def markdown(timings: list[BatchTiming]) -> str:
    lines = ["| executor | jobs | runs | wall s (median) | models/hour (median) | runs: models/hour | "
             "task s summed (median) | verdicts |", "|---|---|---|---|---|---|---|---|"]
    for executor, jobs in SETTINGS:
        runs = [t for t in timings if (t.executor, t.jobs) == (executor, jobs)]
        if runs:
            lines.append(f"| {executor} | {jobs} | {len(runs)} | {statistics.median(t.wall_seconds for t in runs):.1f} | "
                         f"{statistics.median(t.models_per_hour for t in runs):.0f} | "
                         f"{', '.join(f'{t.models_per_hour:.0f}' for t in runs)} | "
                         f"{statistics.median(t.task_seconds for t in runs):.1f} | {' '.join(runs[0].verdicts)} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m pipeline.tools.batch_bench", description=__doc__.splitlines()[0])
    parser.add_argument("models", nargs="*", default=list(SMALL))
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args(argv)
    timings = []
    with tempfile.TemporaryDirectory() as folder:
        for round_ in range(args.rounds):
            for executor, jobs in (SETTINGS if round_ % 2 == 0 else SETTINGS[::-1]):
                timing = time_batch(tuple(args.models), executor, jobs, Path(folder) / f"{executor}-{jobs}-{round_}")
                timings.append(timing)
                print(f"batch_bench: {timing}", flush=True)
    print(markdown(timings))
    print(json.dumps({**task_overhead(20), "import_tensorflow_s": import_seconds("tensorflow"),
                      "import_torch_s": import_seconds("torch")}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
