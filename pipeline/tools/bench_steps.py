"""`make bench BENCH=steps`: what this round's new audit steps cost, as ratios measured in one run, in
BENCHMARKS.md's "## This round's steps" section (`make bench` with no models runs it after the models).

- Dynamic shapes (issue #26): `python -m pipeline audit` at the example and two extra shapes against the same
  audit at the example shape alone, on one conversion of configs/dynamic/fcn_dynamic.yaml. The audit runs the
  extra shapes export.json lists, so the single-shape runs read an export.json without them. Target: 1.3x.
- Below float32 (issue #25): the fp16 storage reference (its profile step) as a share of a plain audit, and
  `audit --layers` (which also reads the TFLite files layer by layer) against a plain audit, on small configs.

Each audit is a fresh process (`pipeline.tools.stage_profile`, which runs `python -m pipeline audit` and writes its
profile steps), the variants alternating with the order swapped every round; medians. Timings are never asserted.
"""
from __future__ import annotations

import dataclasses
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from pipeline.artifacts.folder import REPO_ROOT, ArtifactDir, write_json
from pipeline.artifacts.records import AuditRecord, ExportRecord
from pipeline.tools.bench_measure import RECORD, Goal, machine, measure

HEADING = "## This round's steps"
DYNAMIC_MODEL = "configs/dynamic/fcn_dynamic.yaml"
PRECISION_MODELS = ("seed_ym", "zoo/mobilenet_v2")
SHAPES_TARGET = 1.3
FP16_STEP = "audit: fp16 storage reference"
TFLITE_LAYERS_STEP = "audit: TFLite files layer by layer"
SHAPE_STEP = "audit: at "


@dataclass(frozen=True)
class AuditRun:
    """One `python -m pipeline audit` process: wall seconds, the audit stage's own seconds (audit.json) and its
    profile steps, each name's seconds summed."""

    seconds: float
    audit_seconds: float
    steps: dict[str, float]

    def step(self, prefix: str) -> float:
        return sum(seconds for name, seconds in self.steps.items() if name.startswith(prefix))


@dataclass(frozen=True)
class Variant:
    name: str
    args: tuple[str, ...] = ()
    prepare: Callable[[], None] = lambda: None  # puts the folder in this variant's state before each run


def alternate(variants: list[Variant], repeat: int, run_one: Callable[[Variant], AuditRun]) -> dict[str, list[AuditRun]]:
    """`repeat` rounds of every variant, the order reversed every other round (a drifting load hits both alike)."""
    runs: dict[str, list[AuditRun]] = {v.name: [] for v in variants}
    for round_ in range(repeat):
        for variant in variants if round_ % 2 == 0 else variants[::-1]:
            variant.prepare()
            runs[variant.name].append(run_one(variant))
    return runs


def _median(runs: list[AuditRun], value: Callable[[AuditRun], float] = lambda r: r.seconds) -> float:
    return statistics.median(value(r) for r in runs)


def _share(step: str) -> Callable[[AuditRun], float]:
    return lambda r: r.step(step) / r.audit_seconds if r.audit_seconds > 0 else 0.0


@dataclass(frozen=True)
class ShapesCost:
    """The audit at every shape export.json lists against the same audit at the example shape alone."""

    model: str
    extra_shapes: list[str]
    example: list[AuditRun]
    every: list[AuditRun]

    def ratio(self) -> float:
        return _median(self.every) / _median(self.example)

    def goal(self) -> Goal:
        return Goal(f"audit at {1 + len(self.extra_shapes)} shapes / at the example shape alone ({Path(self.model).stem})",
                    self.ratio(), SHAPES_TARGET)

    def per_shape(self) -> dict[str, float]:
        """Each extra shape's median seconds (its `audit: at …` step in the runs at every shape)."""
        names = dict.fromkeys(n for r in self.every for n in r.steps if n.startswith(SHAPE_STEP))
        return {name.removeprefix(SHAPE_STEP): _median(self.every, lambda r, n=name: r.steps.get(n, 0.0)) for name in names}


@dataclass(frozen=True)
class PrecisionCost:
    """A plain audit against `audit --layers` on one conversion."""

    model: str
    plain: list[AuditRun]
    layers: list[AuditRun]

    def layers_ratio(self) -> float:
        return _median(self.layers) / _median(self.plain)


def _runs(runs: list[AuditRun]) -> str:
    return ", ".join(f"{r.seconds:.1f}" for r in runs)


def _shapes_markdown(cost: ShapesCost) -> list[str]:
    shapes = "; ".join(["the example", *cost.extra_shapes])
    per_shape = "; ".join(f"{where} {seconds:.2f} s" for where, seconds in cost.per_shape().items())
    return [
        f"### Dynamic shapes (issue #26): `{cost.model}`", "", cost.goal().line(), "",
        "| audit | runs | seconds per run | median s | audit stage s (audit.json, median) |", "|---|---|---|---|---|",
        f"| example shape alone | {len(cost.example)} | {_runs(cost.example)} | {_median(cost.example):.1f} | "
        f"{_median(cost.example, lambda r: r.audit_seconds):.1f} |",
        f"| {1 + len(cost.extra_shapes)} shapes ({shapes}) | {len(cost.every)} | {_runs(cost.every)} | "
        f"{_median(cost.every):.1f} | {_median(cost.every, lambda r: r.audit_seconds):.1f} |", "",
        f"Judging each extra shape (its `{SHAPE_STEP}…` profile step, median; its backends and oracles ran in the "
        f"example's runs, each loaded once for every shape): {per_shape or 'none recorded'}. "
        "The single-shape runs audit the same conversion with export.json's extra shapes removed; both re-render "
        "the report, as an audit run alone does.", "",
    ]


def _precision_row(cost: PrecisionCost) -> str:
    fp16 = _median(cost.plain, lambda r: r.step(FP16_STEP))
    tflite = _median(cost.layers, lambda r: r.step(TFLITE_LAYERS_STEP))
    return (f"| {cost.model} | {len(cost.plain)} + {len(cost.layers)} | {_median(cost.plain):.1f} | "
            f"{_median(cost.plain, lambda r: r.audit_seconds):.1f} | {fp16:.2f} ({_median(cost.plain, _share(FP16_STEP)):.1%}) | "
            f"{_median(cost.layers):.1f} (**{cost.layers_ratio():.2f}×**) | {tflite:.2f} "
            f"({_median(cost.layers, _share(TFLITE_LAYERS_STEP)):.1%}) |")


def _precision_markdown(costs: list[PrecisionCost]) -> list[str]:
    return [
        "### Below float32 (issue #25): the fp16 storage reference and the TFLite files read layer by layer", "",
        "| model | runs (plain + --layers) | plain audit s | its audit stage s | fp16 storage reference s (share of the "
        "audit stage) | `audit --layers` s (× plain) | TFLite files layer by layer s in --layers (share of its audit stage) |",
        "|---|---|---|---|---|---|---|",
        *[_precision_row(c) for c in costs], "",
        f"The fp16 storage reference is the `{FP16_STEP}` step (rounding the float32 TFLite file's constants and running "
        f"it on every sample); `audit --layers` also compares the ONNX and TF intermediates layer by layer, so its ratio "
        f"holds more than the `{TFLITE_LAYERS_STEP}` step, shown apart. Seconds per run: "
        + "; ".join(f"{c.model} plain {_runs(c.plain)}, --layers {_runs(c.layers)}" for c in costs) + ".", "",
    ]


def markdown(shapes_cost: ShapesCost | None, precision: list[PrecisionCost], when: str, commit: str, note: str = "") -> str:
    """The section, from its heading to its last line (one trailing newline)."""
    lines = [
        HEADING, "",
        f"Written by `make bench BENCH=steps` on {when} (commit {commit}). Machine: {machine()}."
        + (f" {note}" if note else ""), "",
        "Each figure is a ratio within one run: every audit a fresh `python -m pipeline audit` process on one "
        "conversion (through `pipeline.tools.stage_profile`, which also writes the process's profile steps), the "
        "variants alternating, the order swapped every round; medians. Absolute seconds follow the machine's load.", "",
    ]
    if shapes_cost is not None:
        lines += _shapes_markdown(shapes_cost)
    if precision:
        lines += _precision_markdown(precision)
    return "\n".join(lines).rstrip("\n") + "\n"


def with_section(record: str, section: str) -> str:
    """`record` with its steps section replaced by `section`; without one, `section` goes before ## Batch (or last)."""
    start = record.find("\n" + HEADING)
    if start >= 0:
        end = record.find("\n## ", start + 1)
        return record[:start] + "\n" + section + (record[end:] if end >= 0 else "")
    batch = record.find("\n## Batch")
    if batch < 0:
        return record.rstrip("\n") + "\n\n" + section
    return record[:batch] + "\n" + section + record[batch:]


def _audit_once(model: str, out: Path, args: tuple[str, ...]) -> AuditRun:
    steps_file = out.parent / "steps.json"
    measured = measure([sys.executable, "-m", "pipeline.tools.stage_profile", str(steps_file), "audit", model,
                        "--out", str(out), *args], REPO_ROOT)
    steps: dict[str, float] = {}
    for s in json.loads(steps_file.read_text())["steps"]:
        steps[s["step"]] = steps.get(s["step"], 0.0) + s["seconds"]
    return AuditRun(measured.seconds, ArtifactDir(out).read(AuditRecord).seconds, steps)


def _converted(model: str, scratch: Path) -> Path:
    out = scratch / Path(model).stem
    print(f"bench steps: converting {model}", flush=True)
    measure([sys.executable, "-m", "pipeline", "convert", model, "--out", str(out)], REPO_ROOT)
    return out


def shapes_cost(model: str, repeat: int, scratch: Path) -> ShapesCost:
    out = _converted(model, scratch)
    export_file = out / "export.json"
    every_shape = export_file.read_bytes()
    export = ArtifactDir(out).read(ExportRecord)
    from pipeline.shapes import describe, example_sizes

    variants = [Variant("example", prepare=lambda: write_json(export_file, dataclasses.replace(export, shapes=[]))),
                Variant("every", prepare=lambda: export_file.write_bytes(every_shape))]
    print(f"bench steps: {model}: audit at every shape against the example shape alone, {repeat} rounds", flush=True)
    try:
        runs = alternate(variants, repeat, lambda v: _audit_once(model, out, v.args))
    finally:
        export_file.write_bytes(every_shape)
    extra = [describe(sizes, example_sizes(export.inputs)) for sizes in export.shapes]
    return ShapesCost(model, extra, runs["example"], runs["every"])


def precision_cost(model: str, repeat: int, scratch: Path) -> PrecisionCost:
    out = _converted(model, scratch)
    print(f"bench steps: {model}: plain audit against audit --layers, {repeat} rounds", flush=True)
    runs = alternate([Variant("plain"), Variant("layers", ("--layers",))], repeat, lambda v: _audit_once(model, out, v.args))
    return PrecisionCost(model, runs["plain"], runs["layers"])


def _commit() -> str:
    done = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO_ROOT, capture_output=True, text=True)
    return done.stdout.strip() or "unknown"


def run_and_record(repeat: int, note: str = "") -> str:
    """Measure every step, then write the section into BENCHMARKS.md (the rest of the file kept); returns it."""
    scratch = Path(tempfile.mkdtemp(prefix="bench-steps-"))
    try:
        dynamic = shapes_cost(DYNAMIC_MODEL, repeat, scratch)
        precision = [precision_cost(model, repeat, scratch) for model in PRECISION_MODELS]
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    section = markdown(dynamic, precision, time.strftime("%Y-%m-%d"), _commit(), note)
    RECORD.write_text(with_section(RECORD.read_text() if RECORD.exists() else "# Benchmarks\n", section))
    return section
