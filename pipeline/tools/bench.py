"""`make bench`: time `python -m pipeline convert MODEL` against the bare `onnx2tf` CLI
converting the same ONNX file, in one run, and record the figures in BENCHMARKS.md.

Both commands run as fresh processes (each pays TensorFlow's import once), alternating
`--repeat` times; medians and their ratio go into the record, with the targets of issue #16
and, per model, where the time went (the pipeline's own profile.json). Peak RSS is the sum
over the process tree, sampled every 50 ms.

`steps` (alone: `make bench BENCH=steps`; by default after the models) measures this round's new audit
steps as ratios (pipeline/tools/bench_steps.py), in a section of its own that a models' run keeps.
"""
from __future__ import annotations

import argparse
import contextlib
import json
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING, Iterator

import numpy as np

from pipeline.artifacts.folder import REPO_ROOT
from pipeline.converters.onnx2tf_v1 import CALIBRATION_FILE
from pipeline.converters.onnx2tf_v2 import side_environment
from pipeline.tools.bench_measure import RECORD, Goal, Measurement, machine, measure

if TYPE_CHECKING:
    from pipeline.config import Source


def bare_onnx2tf(onnx_file: Path, work: Path) -> Measurement:
    """The bare CLI with the same outputs the pipeline asks for (SavedModel, Keras v3, TFLite)."""
    if work.exists():
        shutil.rmtree(work)
    work.mkdir(parents=True)
    shutil.copyfile(onnx_file, work / "model.onnx")  # onnxsim rewrites its input in place
    np.save(work / CALIBRATION_FILE, np.random.default_rng(0).random((20, 128, 128, 3), dtype=np.float32))
    onnx2tf = Path(sys.executable).parent / "onnx2tf"
    return measure([str(onnx2tf), "-i", "model.onnx", "-o", "out", "-osd", "-okv3"], work)


def bare_onnx2tf2(onnx_file: Path, work: Path) -> Measurement | None:
    """onnx2tf 2.x's bare CLI (the side environment's, as if activated: its onnxsim on PATH) writing the files
    both converters make and load: its SavedModel (-fdosm) and its TFLite fp32 and fp16 files
    (flatbuffer_direct, its default). None when there is no side environment or it did not write them
    (bare 2.6.9 cannot export a SavedModel with a GELU, which the pipeline's 2.x child adds)."""
    cli = side_environment() / "bin" / "onnx2tf"
    if not cli.exists():
        return None
    if work.exists():
        shutil.rmtree(work)
    work.mkdir(parents=True)
    shutil.copyfile(onnx_file, work / "model.onnx")
    measured = measure([str(cli), "-i", "model.onnx", "-o", "out", "-fdosm"], work, ok_codes=None, path_first=cli.parent)
    made = (work / "out" / "saved_model.pb").exists() and any((work / "out").glob("*_float32.tflite"))
    return measured if made else None


BARE = {"bare": bare_onnx2tf, "bare2": bare_onnx2tf2}


def run(model: str, repeat: int) -> dict:
    """`repeat` rounds of (pipeline, bare 1.x CLI, bare 2.x CLI, pipeline writing 2.x's files), the order
    reversed every round; the last run's profile.json and report.json. The last is run only once bare 2.x
    has made its files: the pipeline asked (config key `artifacts`) for the files bare 2.x writes, so that
    the two are compared on the files both make."""
    scratch = Path(tempfile.mkdtemp(prefix="bench-"))
    pipeline_runs, conversions, extras, bare_keras, like_2x = [], [], [], True, []
    bare_runs: dict[str, list] = {name: [] for name in BARE}
    out, out_2x = scratch / "pipeline", scratch / "pipeline_2x_files"
    try:
        with config_making(model, FILES_2X) as config_2x:
            for round_ in range(repeat):
                order = ["pipeline", *BARE, "pipeline_2x_files"]
                for which in order if round_ % 2 == 0 or not (out / "model.onnx").exists() else order[::-1]:
                    if which == "pipeline":
                        pipeline_runs.append(_pipeline(model, out))
                        profile = json.loads((out / "profile.json").read_text())
                        conversions.append(conversion_seconds(profile))
                        extras.append(sum(s["seconds"] for s in profile["steps"] if s["step"] in EXTRA_FILE_STEPS))
                    elif which == "pipeline_2x_files":
                        if config_2x is not None and any(bare_runs["bare2"]):
                            like_2x.append(_pipeline(str(config_2x), out_2x))
                    else:
                        bare_runs[which].append(BARE[which](out / "model.onnx", scratch / which))
                        bare_keras = bare_keras if which != "bare" else any((scratch / "bare").rglob("*.keras"))
        report = json.loads((out / "report.json").read_text())
        verdict_2x = json.loads((out_2x / "report.json").read_text())["verdict"] if like_2x else None
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    like, extra = like_for_like(conversions, extras, bare_keras)
    made_2x = all(bare_runs["bare2"])
    return {"model": model, "pipeline": pipeline_runs, "bare": bare_runs["bare"],
            "bare2": [m for m in bare_runs["bare2"] if m is not None] if made_2x else [],
            "pipeline_2x_files": like_2x if made_2x else [], "verdict_2x_files": verdict_2x,
            "report": report, "profile": profile, "conversions": like, "extra": extra}


def _pipeline(model: str, out: Path) -> Measurement:
    return measure([sys.executable, "-m", "pipeline", "convert", model, "--out", str(out)], REPO_ROOT)


# The files bare onnx2tf 2.x writes that both converters make and load (its Keras file does not load).
FILES_2X = ("saved_model", "tflite_fp32", "tflite_fp16")


@contextlib.contextmanager
def config_making(model: str, files: tuple[str, ...]) -> Iterator[Path | None]:
    """A copy of the model's config that asks (config key `artifacts`) for `files` only, in a temporary folder
    (nothing the configs' globs see), its paths made absolute; None for an ONNX file (no config) or a config
    that does not ask for all of `files` (its own run already writes fewer: it stands for both)."""
    import yaml

    from pipeline.config import ARTIFACTS, resolve_source

    source = resolve_source(model)
    if source.kind != "config":
        yield None
        return
    config = yaml.safe_load(source.path.read_text())
    if not set(files) <= set(config.get("artifacts") or ARTIFACTS):
        yield None
        return
    config["artifacts"] = list(files)
    _absolute_paths(config, source)
    with tempfile.TemporaryDirectory(prefix="bench-config-") as folder:
        copy = Path(folder) / source.path.name
        copy.write_text(yaml.safe_dump(config, sort_keys=False))
        yield copy


def _absolute_paths(config: dict, source: "Source") -> None:
    """The config keys read relative to the config's folder (Source.resolve; the int8 calibration data,
    convert/calibration.py), made absolute for a copy elsewhere."""
    target, sep, attr = str(config.get("model", "")).rpartition(":")
    if sep and target.endswith(".py"):
        config["model"] = f"{source.resolve(target)}:{attr}"
    if config.get("checkpoint"):
        config["checkpoint"] = str(source.resolve(config["checkpoint"]))
    int8 = (config.get("quantize") or {}).get("int8") or {}
    if int8.get("calibration"):
        int8["calibration"] = str(source.resolve(int8["calibration"]))


def like_for_like(conversions: list[float], extras: list[float], bare_keras: bool) -> tuple[list[float], float]:
    """Each run's conversion seconds without the files the bare CLI did not write, and the median of those."""
    if bare_keras:
        return conversions, 0.0
    return [c - e for c, e in zip(conversions, extras)], statistics.median(extras)


# Conversion steps that write a file the bare CLI could not write (onnx2tf's own Keras save fails for some
# models; the pipeline then saves one with frozen variables). Not part of a like-for-like comparison: the
# conversion's figure leaves them out when the bare CLI wrote no Keras file, and the record shows them apart.
EXTRA_FILE_STEPS = ("convert: Keras file with frozen variables",)


def conversion_seconds(profile: dict) -> float:
    """The conversion's own work, comparable with the bare CLI (which imports TensorFlow, converts and
    writes the same files): the conversion child's steps (its imports, onnx2tf, collecting the files)
    and the parent's convert steps after it (binding, TF-side lint). Overlap with other stages is
    not subtracted, so this is what the conversion costs, not what it adds to the wall time. Child
    steps after the convert stage (a layer model or repair candidates for a failing model) are not
    the conversion's."""
    stage = next(s for s in profile["steps"] if s["step"] == "stage: convert")
    end = stage["start"] + stage["seconds"]
    child = sum(s["seconds"] for s in profile["steps"] if s["child"] and s["start"] < end)
    parent = sum(s["seconds"] for s in profile["steps"] if not s["child"] and s["step"].startswith("convert:"))
    return child + parent


def stage_seconds(profile: dict) -> dict[str, float]:
    return {s["step"].removeprefix("stage: "): s["seconds"] for s in profile["steps"] if s["step"].startswith("stage: ")}


def _median(runs: list[Measurement]) -> float:
    return statistics.median(m.seconds for m in runs)


def ratio(result: dict) -> float:
    """The pipeline against each bare CLI on the files both make, the larger (bare 2.x's only where it made its
    files every time): against bare 1.x, the pipeline's full run (the same four files, or one more where bare
    1.x's Keras save fails); against bare 2.x, the pipeline asked for 2.x's files (FILES_2X), where it ran,
    else its full run. Against the faster CLI alone, a slower pipeline run could hide behind a cheaper one."""
    against = [_median(result["pipeline"]) / _median(result["bare"])]
    if result.get("bare2"):
        against.append(_median(result.get("pipeline_2x_files") or result["pipeline"]) / _median(result["bare2"]))
    return max(against)


def conversion_ratio(result: dict) -> float:
    return statistics.median(result["conversions"]) / _median(result["bare"])


def conversion_ratio_2x(result: dict) -> float | None:
    """The conversion against bare onnx2tf 2.x, which writes no Keras file: where it made its files, the
    measure of whether 2.x would be the faster first strategy (issue #27)."""
    return statistics.median(result["conversions"]) / _median(result["bare2"]) if result.get("bare2") else None


def rss_ratio(result: dict) -> float:
    return max(m.peak_rss_mb for m in result["pipeline"]) / max(m.peak_rss_mb for m in result["bare"])


STAGES = ("export", "validate", "lint", "convert", "audit", "report")


def summary_row(result: dict) -> str:
    report, pipe, bare = result["report"], _median(result["pipeline"]), _median(result["bare"])
    bare2 = f"{_median(result['bare2']):.1f}" if result.get("bare2") else "–"
    stages = stage_seconds(result["profile"])
    per_stage = " / ".join(f"{stages.get(k, 0):.1f}" for k in STAGES)
    rss = (f"{max(m.peak_rss_mb for m in result['pipeline']):.0f} / {max(m.peak_rss_mb for m in result['bare']):.0f} "
           f"({rss_ratio(result):.2f}×)")
    against_2x = conversion_ratio_2x(result)
    conversion = (f"{statistics.median(result['conversions']):.1f} ({conversion_ratio(result):.2f}×"
                  + (f"; {against_2x:.2f}× bare 2.x" if against_2x is not None else "") + ")")
    if result.get("extra"):
        conversion += f" + {result['extra']:.1f} extra Keras file"
    like_2x = f"{_median(result['pipeline_2x_files']):.1f}" if result.get("pipeline_2x_files") else "–"
    return (f"| {result['model']} | {len(result['pipeline'])} | {pipe:.1f} | {like_2x} | {bare:.1f} | {bare2} | **{ratio(result):.2f}** | "
            f"{conversion} | {per_stage} | {rss} | {report['verdict']} |")


def goals(results: list[dict]) -> list[Goal]:
    """The targets of issues #16 and #27 (the zoo's ratios against the bare CLIs, `ratio`), each with the measured figure."""
    zoo = [r for r in results if r["model"].startswith("zoo/")]
    found = [Goal(f"{r['model']} pipeline / bare CLI", ratio(r), 1.5 if "full" in r["model"] else 1.25)
             for r in results if not r["model"].startswith("zoo/")]
    if zoo:
        found += [Goal("zoo median pipeline / bare CLIs", statistics.median(ratio(r) for r in zoo), 1.1),
                  Goal("zoo worst pipeline / bare CLIs", max(ratio(r) for r in zoo), 1.5),
                  Goal("zoo worst peak RSS pipeline / bare CLI", max(rss_ratio(r) for r in zoo), 2.0)]
    return found + [Goal("worst conversion / bare CLI (every model)", max(conversion_ratio(r) for r in results), 1.1)]


def breakdown(profile: dict) -> list[str]:
    """Each step once (repeated steps summed), in order of first start; child = a conversion child."""
    rows: dict[tuple[str, bool], list[float]] = {}
    for s in profile["steps"]:
        entry = rows.setdefault((s["step"], s["child"]), [s["start"], 0.0, 0])
        entry[1] += s["seconds"]
        entry[2] += 1
    lines = ["| step | process | starts at s | seconds |", "|---|---|---|---|"]
    for (name, child), (start, seconds, count) in sorted(rows.items(), key=lambda kv: kv[1][0]):
        times = f" ({count}×)" if count > 1 else ""
        lines.append(f"| {name}{times} | {'conversion child' if child else 'pipeline'} | {start:.2f} | {seconds:.2f} |")
    lines.append(f"| (whole run, process start to profile written) | pipeline | 0.00 | {profile['wall_seconds']:.2f} |")
    return lines


def details(result: dict) -> str:
    report = result["report"]
    runs = lambda key: ", ".join(f"{m.seconds:.2f}" for m in result.get(key, []))  # noqa: E731
    pairs = ", ".join(f"{c['candidate']} {c['max_abs']:.2e}" if c["max_abs"] is not None else f"{c['candidate']} n/a"
                      for c in report["comparisons"])
    strategy = report.get("conversion", {}).get("strategy", "default")
    return "\n".join([
        f"### {result['model']}", "",
        f"- pipeline runs (s): {runs('pipeline')}; bare onnx2tf 1.x runs (s): {runs('bare')}; bare onnx2tf 2.x runs (s): "
        f"{runs('bare2') or 'none (it did not make its SavedModel and TFLite files)'}; "
        + (f"pipeline runs writing 2.x's files (s): {runs('pipeline_2x_files')} (verdict {result.get('verdict_2x_files')}); "
           if result.get("pipeline_2x_files") else "") +
        f"conversion work (s): {', '.join(f'{c:.2f}' for c in result['conversions'])}",
        *([f"- the bare CLI wrote no Keras file for this model; the pipeline wrote one with frozen variables in "
           f"{result['extra']:.1f} s, left out of the conversion figure above (same files on both sides)"] if result.get("extra") else []),
        f"- exporter: {report['exporter']}, conversion strategy: {strategy}",
        f"- repair search: {_repair_line(report)}",
        f"- max_abs vs {report['reference']}: {pairs}",
        *[f"- why: {r}" for r in report.get("verdict_reasons", [])], "",
        "Where the time went (the last pipeline run's profile.json):", "",
        *breakdown(result["profile"]), "",
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
        "`onnx2tf -i model.onnx -osd -okv3` CLI of onnx2tf 1.x on the same ONNX file (the same outputs: SavedModel, "
        "Keras v3, TFLite fp32 and fp16) and onnx2tf 2.x's bare `onnx2tf -i model.onnx -fdosm` (its SavedModel and "
        "TFLite fp32 and fp16: the files both make; 2.x's Keras file does not load), alternating in one run (the order "
        "reversed every round); medians. The ratio compares the pipeline with each bare CLI on the files both make and "
        "is the larger of the two (2.x's counted where it made its files in every round), so at least the one against "
        "the faster CLI: against bare 1.x, the pipeline's full run (which also writes a Keras file where bare 1.x's "
        "Keras save fails); against bare 2.x, a pipeline run whose config asks (key `artifacts`) for 2.x's files only, "
        "SavedModel and TFLite fp32 and fp16 (*pipeline s, 2.x's files*: every stage still runs, and audits those "
        "files), in the same alternation. "
        "*Conversion* is the conversion's own work from profile.json (the conversion child's imports, onnx2tf and "
        "collecting the files, then binding and the TF-side lint), comparable with the bare CLI, which does the "
        "same; where the bare CLI writes no Keras file (its Keras save fails), the pipeline's own Keras file is "
        "left out of that figure and shown beside it. Where bare 2.x made its files, the conversion is also shown against it "
        "(× bare 2.x: the pipeline's conversion writes the Keras file too), the measure of whether onnx2tf 2.x would be "
        "the faster first strategy. Stage seconds are from the last pipeline run; stages overlap (the conversion runs during validate "
        "and lint), so they do not add up to the wall time. Peak RSS is the process tree's, sampled every 50 ms.", "",
        "## Targets (issues #16 and #27)", "", *[g.line() for g in goals(results)], "",
        "| model | runs | pipeline s | pipeline s, 2.x's files | bare onnx2tf 1.x s | bare onnx2tf 2.x s | ratio (worse of the two) | "
        "conversion s (× bare 1.x) | export / validate / lint / convert / audit / report s | peak RSS MiB pipeline / bare 1.x | verdict |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
        *[summary_row(r) for r in results], "", "## Details", "",
        *[details(r) for r in results],
    ]
    return "\n".join(lines)


KEPT_HEADINGS = ("\n## This round's steps", "\n## Batch")  # written by `make bench BENCH=steps` and batch_bench


def _kept_sections() -> str:
    """Sections written apart (this round's steps, by bench_steps; ## Batch, by pipeline.tools.batch_bench), which
    follow the models' part: kept when the models' part is rewritten."""
    if not RECORD.exists():
        return ""
    text = RECORD.read_text()
    found = [i for i in (text.find(heading) for heading in KEPT_HEADINGS) if i >= 0]
    return text[min(found):] if found else ""


FULL_SIZE = ("resnet50_full",)  # one round each is enough at this size (issue #16); the rest take the median of --repeat


def _default_models() -> list[str]:
    return ["seed_ym", *sorted(f"zoo/{p.stem}" for p in (REPO_ROOT / "configs" / "zoo").glob("*.yaml")), *FULL_SIZE]


STEPS = "steps"  # the name that runs this round's steps (pipeline/tools/bench_steps.py)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m pipeline.tools.bench", description=__doc__.splitlines()[0])
    parser.add_argument("models", nargs="*", help="config names (default: seed_ym, every zoo model, resnet50_full, "
                        f"then this round's steps); '{STEPS}' measures this round's new audit steps")
    parser.add_argument("--repeat", type=int, default=3,
                        help="rounds for each model except the full-size ones, which run once (minutes each)")
    parser.add_argument("--note", default="", help="a sentence for the steps section (say, what else the machine ran)")
    args = parser.parse_args(argv)
    models = [m for m in args.models if m != STEPS] or ([] if args.models else _default_models())
    if models:
        print(_models(models, args.repeat))
    if STEPS in args.models or not args.models:
        from pipeline.tools import bench_steps

        print(bench_steps.run_and_record(args.repeat, args.note))
    return 0


def _models(models: list[str], repeat: int) -> str:
    kept = _kept_sections()
    results = []
    for model in models:
        print(f"bench: {model}", flush=True)
        results.append(run(model, 1 if model in FULL_SIZE else repeat))
        # Written after every model: a long bench that is stopped keeps what it measured.
        text = markdown(results, time.strftime("%Y-%m-%d"))
        RECORD.write_text(text + "\n" + kept)
    return text


if __name__ == "__main__":
    sys.exit(main())
