"""`python -m pipeline.tools.noise_table MODEL...`: the noise ratio of every backend, per model, into NOISE.md.

Runs `convert` for each model (and audits each tampered ONNX file given as MODEL=file.onnx@config),
then tabulates each comparison's error against the float64 oracle as a multiple of the float32
noise floor. The bound in pipeline/audit/noise.py is chosen from this table.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

from pipeline.artifacts.folder import REPO_ROOT

BACKENDS = ("onnxruntime", "tf_saved_model", "keras", "tflite_fp32", "tflite_fp16")


def run_one(model: str, out: Path) -> dict:
    """Convert (or audit a given ONNX file against its config) and return report.json."""
    if "@" in model:
        onnx_file, config = model.split("@", 1)
        argv = ["audit", config, "--onnx", onnx_file]
    else:
        argv = ["convert", model]
    subprocess.run([sys.executable, "-m", "pipeline", *argv, "--out", str(out)], cwd=REPO_ROOT,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=False)
    report = out / "report.json"
    return json.loads(report.read_text()) if report.exists() else {}


def row(model: str, report: dict) -> str:
    ratios = {}
    for c in report.get("comparisons", []):
        ratio = c.get("noise_ratio")
        if ratio is not None:
            ratios[c["candidate"]] = max(ratios.get(c["candidate"], 0.0), ratio)
    floors = (report.get("oracle") or {}).get("floors") or {}
    floor = max(floors.values()) if floors else None
    cells = [f"{ratios[b]:.3g}" if b in ratios else "n/a" for b in BACKENDS]
    shown_floor = "n/a" if floor is None else f"{floor:.3g}"
    return (f"| {model} | {report.get('verdict', 'no report')} | {shown_floor} | " + " | ".join(cells)
            + f" | {_fp16_cost(report)} |")


def _fp16_cost(report: dict) -> str:
    """The fp16 file's precision cost: its lowest SNR against the reference on the in-distribution samples."""
    snrs = [c["snr_db"] for c in report.get("comparisons", []) if c["candidate"] == "tflite_fp16" and c.get("snr_db") is not None]
    return f"{min(snrs):.1f}" if snrs else "n/a"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m pipeline.tools.noise_table", description=__doc__.splitlines()[0])
    parser.add_argument("models", nargs="+", help="config names, or tampered.onnx@config")
    parser.add_argument("--output", default=str(REPO_ROOT / "NOISE.md"))
    args = parser.parse_args(argv)
    lines = ["| model | verdict | noise floor | " + " | ".join(BACKENDS) + " | fp16 SNR dB |",
             "|---|---|---|" + "---|" * (len(BACKENDS) + 1)]
    with tempfile.TemporaryDirectory(prefix="noise-") as tmp:
        for index, model in enumerate(args.models):
            lines.append(row(model, run_one(model, Path(tmp) / str(index))))
            print(lines[-1], flush=True)
    Path(args.output).write_text("\n".join(lines) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
