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

from pipeline.artifacts import REPO_ROOT
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
    if process.returncode not in (0, 1):
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


def markdown(result: dict, when: str) -> str:
    pipe = statistics.median(m.seconds for m in result["pipeline"])
    bare = statistics.median(m.seconds for m in result["bare"])
    report = result["report"]
    lines = [
        f"## {result['model']} ({when})", "",
        f"Machine: {machine()}", "",
        f"Runs: {len(result['pipeline'])}, interleaved. Each command is a fresh process.", "",
        "| command | median s | runs (s) | peak RSS (MiB) |", "|---|---|---|---|",
        f"| `python -m pipeline convert {result['model']}` (all stages) | {pipe:.2f} | "
        f"{', '.join(f'{m.seconds:.2f}' for m in result['pipeline'])} | {max(m.peak_rss_mb for m in result['pipeline']):.0f} |",
        f"| bare `onnx2tf -i model.onnx -osd -okv3` | {bare:.2f} | "
        f"{', '.join(f'{m.seconds:.2f}' for m in result['bare'])} | {max(m.peak_rss_mb for m in result['bare']):.0f} |",
        "", f"**Ratio pipeline / bare onnx2tf: {pipe / bare:.2f}**", "",
        "Stage seconds in the last pipeline run: " + ", ".join(f"{k} {v:.2f}" for k, v in report["timings"].items()), "",
        f"Verdict: {report['verdict']}. max_abs vs {report['reference']}: "
        + ", ".join(f"{c['candidate']} {c['max_abs']:.2e}" for c in report["comparisons"]), "",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m pipeline.bench", description=__doc__.splitlines()[0])
    parser.add_argument("model", nargs="?", default="seed_ym")
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args(argv)
    result = run(args.model, args.repeat)
    section = markdown(result, time.strftime("%Y-%m-%d"))
    header = "# Benchmarks\n\nWritten by `make bench`; each section is replaced when its model is measured again.\n\n"
    existing = RECORD.read_text() if RECORD.exists() else header
    RECORD.write_text(_replace_section(existing, result["model"], section))
    print(section)
    return 0


def _replace_section(text: str, model: str, section: str) -> str:
    parts = text.split("\n## ")
    kept = [parts[0].rstrip("\n") + "\n"] + ["## " + p.rstrip("\n") + "\n" for p in parts[1:] if not p.startswith(f"{model} (")]
    return "\n".join(kept + [section])


if __name__ == "__main__":
    sys.exit(main())
