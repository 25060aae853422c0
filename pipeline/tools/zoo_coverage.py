"""`python -m pipeline.tools.zoo_coverage BATCH_DIR`: the README's wide-zoo coverage table from a batch's folder.

One row per model of the batch (batch.json): its verdict, which converter made the shipped files, its
whole run's seconds, and what the audit found (report.json): the worst float32 TF backend's error as a
multiple of the noise floor, and the fp16 file against its storage floor or, where it has none, its SNR.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

TF_FLOAT32 = ("tf_saved_model", "keras", "tflite_fp32")
SECOND_CONVERTER = "onnx2tf2"  # the registry's name for onnx2tf 2.x (pipeline/converters/__init__.py)
HEADER = ["| model | verdict (converter, time) | what the audit found |", "|---|---|---|"]


def rows(batch_dir: Path) -> list[str]:
    batch = json.loads((batch_dir / "batch.json").read_text())
    return HEADER + [row(result, _report(batch_dir, result["model"])) for result in sorted(batch["results"], key=lambda r: r["model"])]


def _report(batch_dir: Path, model: str) -> dict | None:
    path = batch_dir / model / "report.json"
    return json.loads(path.read_text()) if path.exists() else None


def row(result: dict, report: dict | None) -> str:
    if report is None:
        return f"| {result['model']} | {result['verdict']} ({result['seconds']:.0f} s) | no report: {result.get('reason') or 'see its log'} |"
    second = (report.get("conversion") or {}).get("converter") == SECOND_CONVERTER
    made = f"{result['verdict']} ({'2.x' if second else '1.x'}, {result['seconds']:.0f} s)"
    return f"| {result['model']} | {made} | {'; '.join(findings(report, second))} |"


def findings(report: dict, second: bool) -> list[str]:
    comparisons = {c["candidate"]: c for c in report["comparisons"]}
    ratios = [comparisons[b]["noise_ratio"] for b in TF_FLOAT32 if comparisons.get(b, {}).get("noise_ratio") is not None]
    found = [f"TF float32 at most {max(ratios):.2g}x the floor" if ratios else "TF float32 not judged by the floor"]
    fp16 = comparisons.get("tflite_fp16")
    if fp16 is not None:
        found.append(f"fp16 {fp16['noise_ratio']:.2g}x its storage floor" if fp16.get("noise_ratio") is not None
                     else f"fp16 {fp16['snr_db']:.0f} dB (precision budget)" if fp16.get("snr_db") is not None
                     else "fp16 not judged (no SNR)")
    if "keras" not in comparisons:
        found.append("no Keras file (2.x writes none that loads)" if second else "no Keras file")
    return found


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m pipeline.tools.zoo_coverage", description=__doc__.splitlines()[0])
    parser.add_argument("batch_dir", type=Path, help="a `pipeline batch` output folder (make zoo-wide's artifacts/zoo_wide)")
    args = parser.parse_args(argv)
    if not (args.batch_dir / "batch.json").exists():
        print(f"error: {args.batch_dir} has no batch.json: give the folder `pipeline batch --out` wrote", file=sys.stderr)
        return 2
    print("\n".join(rows(args.batch_dir)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
