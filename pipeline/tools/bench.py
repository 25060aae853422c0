"""`make bench`: time `python -m pipeline convert MODEL` against the bare `onnx2tf` CLI
converting the same ONNX file, in one run, and record the figures in BENCHMARKS.md.

Both commands run as fresh processes (each pays TensorFlow's import once), interleaved
`--repeat` times; medians and their ratio go into the record. Peak RSS is the sum over
the process tree, sampled every 50 ms.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

import numpy as np
import psutil

from pipeline.artifacts.folder import REPO_ROOT
from pipeline.converters.onnx2tf_v1 import CALIBRATION_FILE

RECORD = REPO_ROOT / "BENCHMARKS.md"


@dataclass(frozen=True)
class Measurement:
    seconds: float
    peak_rss_mb: float


def measure(command: list[str], cwd: Path) -> Measurement:
    """Run a command to completion; wall time and peak RSS of its process tree."""
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
    start = time.perf_counter()
    process = subprocess.Popen(command, cwd=cwd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    peak = _watch_rss(process)
    _, stderr = process.communicate()
    seconds = time.perf_counter() - start
    if process.returncode not in (0, 1, 4):  # pass, fail and inconclusive all produce a report
        raise SystemExit(f"error: {' '.join(command)} exited {process.returncode}: {stderr.decode()[-500:]}")
    return Measurement(seconds, peak() / 2**20)


def _watch_rss(process: subprocess.Popen):
    peak = [0]

    def sample() -> None:
        try:
            root = psutil.Process(process.pid)
            while process.poll() is None:
                tree = [root, *root.children(recursive=True)]
                peak[0] = max(peak[0], sum(_rss(p) for p in tree))
                time.sleep(0.05)
        except psutil.NoSuchProcess:
            return

    thread = threading.Thread(target=sample, daemon=True)
    thread.start()
    return lambda: (thread.join(), peak[0])[1]


def _rss(process: psutil.Process) -> int:
    try:
        return process.memory_info().rss
    except psutil.NoSuchProcess:
        return 0


def bare_onnx2tf(onnx_file: Path, work: Path) -> Measurement:
    """The bare CLI with the same outputs the pipeline asks for (SavedModel, Keras v3, TFLite)."""
    if work.exists():
        shutil.rmtree(work)
    work.mkdir(parents=True)
    shutil.copyfile(onnx_file, work / "model.onnx")  # onnxsim rewrites its input in place
    np.save(work / CALIBRATION_FILE, np.random.default_rng(0).random((20, 128, 128, 3), dtype=np.float32))
    onnx2tf = Path(sys.executable).parent / "onnx2tf"
    return measure([str(onnx2tf), "-i", "model.onnx", "-o", "out", "-osd", "-okv3"], work)


def run(model: str, repeat: int) -> dict:
    scratch = Path(tempfile.mkdtemp(prefix="bench-"))
    pipeline_runs, bare_runs = [], []
    try:
        for _ in range(repeat):
            out = scratch / "pipeline"
            pipeline_runs.append(measure([sys.executable, "-m", "pipeline", "convert", model, "--out", str(out)], REPO_ROOT))
            bare_runs.append(bare_onnx2tf(out / "model.onnx", scratch / "bare"))
        report = json.loads((out / "report.json").read_text())
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return {"model": model, "pipeline": pipeline_runs, "bare": bare_runs, "report": report}


def machine() -> str:
    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.processor() or "unknown CPU")
    memory = psutil.virtual_memory().total / 2**30
    versions = ", ".join(f"{d} {metadata.version(d)}" for d in ("torch", "onnx", "onnxruntime", "tensorflow-cpu", "onnx2tf"))
    return f"{cpu}, {os.cpu_count()} cores, {memory:.0f} GiB RAM, Python {platform.python_version()}; {versions}"


def _median(runs: list[Measurement]) -> float:
    return statistics.median(m.seconds for m in runs)


def _worst(report: dict, precision: str) -> str:
    values = [c["max_abs"] for c in report["comparisons"]
              if (c["candidate"] == "tflite_fp16") == (precision == "fp16") and c["max_abs"] is not None]
    return f"{max(values):.1e}" if values else "n/a"


def summary_row(result: dict) -> str:
    report, pipe, bare = result["report"], _median(result["pipeline"]), _median(result["bare"])
    stages = " / ".join(f"{report['timings'].get(k, 0):.1f}" for k in ("export", "validate", "lint", "convert", "audit"))
    rss = f"{max(m.peak_rss_mb for m in result['pipeline']):.0f} / {max(m.peak_rss_mb for m in result['bare']):.0f}"
    return (f"| {result['model']} | {len(result['pipeline'])} | {pipe:.1f} | {bare:.1f} | **{pipe / bare:.2f}** | {stages} | "
            f"{rss} | {report['verdict']} | {_worst(report, 'fp32')} | {_worst(report, 'fp16')} |")


def details(result: dict) -> str:
    report = result["report"]
    runs = lambda key: ", ".join(f"{m.seconds:.2f}" for m in result[key])  # noqa: E731
    pairs = ", ".join(f"{c['candidate']} {c['max_abs']:.2e}" if c["max_abs"] is not None else f"{c['candidate']} n/a"
                      for c in report["comparisons"])
    strategy = report.get("conversion", {}).get("strategy", "default")
    return "\n".join([
        f"### {result['model']}", "",
        f"- pipeline runs (s): {runs('pipeline')}; bare onnx2tf runs (s): {runs('bare')}",
        f"- exporter: {report['exporter']}, conversion strategy: {strategy}",
        f"- repair search: {_repair_line(report)}",
        f"- max_abs vs {report['reference']}: {pairs}",
        *[f"- why: {r}" for r in report.get("verdict_reasons", [])], "",
    ])


def _repair_line(report: dict) -> str:
    """Whether the numeric fallback ran: a model whose conversion is correct never enters it (no cost)."""
    repair = report.get("repair")
    if not repair:
        return "not entered (0 s)"
    outcome = f"repaired by {repair['winner']}" if repair["winner"] else f"no repair ({repair['gave_up']})"
    return f"{len(repair['attempts'])} candidate conversion(s) in {report['timings'].get('repair', 0):.1f} s, {outcome}"


def markdown(results: list[dict], when: str) -> str:
    lines = [
        "# Benchmarks", "",
        f"Written by `make bench` on {when}. Machine: {machine()}.", "",
        "Each model: `python -m pipeline convert MODEL` (every stage, a fresh process) against the bare "
        "`onnx2tf -i model.onnx -osd -okv3` CLI on the same ONNX file, interleaved in one run; medians. "
        "Stage seconds are from the last pipeline run; peak RSS is the process tree's, sampled every 50 ms.", "",
        "| model | runs | pipeline s | bare onnx2tf s | ratio | export / validate / lint / convert / audit s | "
        "peak RSS MiB (pipeline / bare) | verdict | worst max_abs fp32 | max_abs fp16 |",
        "|---|---|---|---|---|---|---|---|---|---|",
        *[summary_row(r) for r in results], "", "## Details", "",
        *[details(r) for r in results],
    ]
    return "\n".join(lines)


def _zoo() -> list[str]:
    return sorted(f"zoo/{p.stem}" for p in (REPO_ROOT / "configs" / "zoo").glob("*.yaml"))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m pipeline.tools.bench", description=__doc__.splitlines()[0])
    parser.add_argument("models", nargs="*", help="config names (default: seed_ym and every zoo model)")
    parser.add_argument("--repeat", type=int, default=3, help="runs of seed_ym (zoo models run once each)")
    args = parser.parse_args(argv)
    models = args.models or ["seed_ym", *_zoo()]
    results = []
    for model in models:
        print(f"bench: {model}", flush=True)
        results.append(run(model, args.repeat if model == "seed_ym" else 1))
        # Written after every model: a long bench that is stopped keeps what it measured.
        text = markdown(results, time.strftime("%Y-%m-%d"))
        RECORD.write_text(text + "\n")
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
