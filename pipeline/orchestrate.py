"""The run: stage order, export fallbacks around conversion, and the run-level folder swap.

Each stage reads only what earlier stages wrote to the artifact folder, so any stage can be
rerun alone (`run_stage`); `run_all` runs them in order inside a fresh folder that replaces
the artifact folder only when every stage finished. No stage imports this module or the CLI.

Export fallbacks: the convert stage tries its own converter strategies. When all of them
fail on the pipeline's own export, the model is exported again with another exporter or
opset, validated, linted and converted again. Which choice produced the artifacts, and why
the earlier ones failed, is recorded in export.json and convert.json. The audit still
decides the verdict.
"""
from __future__ import annotations

import dataclasses
import json
import re
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from pipeline import profile
from pipeline.artifacts.folder import ArtifactDir, finite
from pipeline.artifacts.guard import fresh_folder, raise_if_interrupted
from pipeline.artifacts.records import ExportRecord, ValidateRecord
from pipeline.config import CONFIGS_DIR, Source
from pipeline.console import console
from pipeline.errors import (
    EXIT_AUDIT_FAILED, EXIT_INCONCLUSIVE, EXIT_PASS, ConversionError, PipelineError, UsageError,
)
from pipeline.export.stage import ExportChoice

VERDICT_EXIT = {"pass": EXIT_PASS, "fail": EXIT_AUDIT_FAILED, "inconclusive": EXIT_INCONCLUSIVE}


@dataclass(frozen=True)
class RunRequest:
    """What one command asks for: the model, where its artifacts go, and the options."""

    source: Source
    artifacts: ArtifactDir
    onnx: Path | None = None  # an ONNX file made elsewhere (lint --onnx, audit/convert --onnx)
    inputs: Path | None = None  # a user's .npz of real inputs
    samples: int | None = None
    layers: bool = False
    json: bool = False
    verbose: bool = False
    full_run: bool = False  # every stage in a row: the report prints what single stages would print themselves
    head: object | None = dataclasses.field(default=None, compare=False)  # convert.head_start.HeadStart of a full run

    def at(self, artifacts: ArtifactDir) -> "RunRequest":
        """The same request, for a full run inside `artifacts` (the fresh folder)."""
        return dataclasses.replace(self, artifacts=artifacts, full_run=True)


def _stage_export(request: RunRequest) -> int:
    from pipeline.export import stage as export

    artifacts = request.artifacts
    if request.onnx is not None:
        return _import_given_onnx(request)
    record = export.run(request.source, artifacts)
    console.print(f"export: {record.exporter} -> {artifacts.shown(artifacts.onnx)} (opset {record.opset})")
    return EXIT_PASS


def _import_given_onnx(request: RunRequest) -> int:
    from pipeline.export import stage as export

    if request.source.kind != "config":
        raise UsageError("--onnx needs a config MODEL (the PyTorch model to audit the file against)")
    if not request.onnx.is_file():
        raise UsageError(f"--onnx {request.onnx}: file not found; check the path")
    record = export.run(request.source, request.artifacts, onnx_file=request.onnx)
    console.print(f"export: using the given {request.onnx} (opset {record.opset}) instead of exporting")
    return EXIT_PASS


def _stage_validate(request: RunRequest) -> int:
    from pipeline.validate import stage as validate

    artifacts = request.artifacts
    record = validate.run(request.source, artifacts)
    for c in record.comparisons:
        console.print(f"validate: {c.candidate} vs {c.reference} '{c.output}': max_abs {c.max_abs:.3g} -> {'pass' if c.passed else 'FAIL'}")
    console.print(f"validate: checker and shape inference passed for {artifacts.shown(artifacts.onnx)}")
    return EXIT_PASS if record.passed else EXIT_AUDIT_FAILED


def _stage_lint(request: RunRequest) -> int:
    from pipeline.lint.stage import run
    from pipeline.report.terminal import print_findings

    source, artifacts, onnx_file = request.source, request.artifacts, request.onnx
    if onnx_file is not None and not onnx_file.is_file():
        raise UsageError(f"--onnx {onnx_file}: file not found; check the path")
    if onnx_file is None and source.kind == "onnx" and not artifacts.onnx.exists():
        onnx_file = source.path  # an ONNX MODEL can be linted before any stage ran
    if onnx_file is None and not artifacts.onnx.exists():
        console.print(f"lint: no model.onnx in {artifacts.root} yet: exporting it first (the 'export' stage)")
        _stage_export(request)
    record = run(source, artifacts, onnx_file)
    if request.json:
        print(json.dumps(record.to_json(), indent=2))
    else:
        print_findings(record.to_json(), verbose=request.verbose)
    return EXIT_PASS if record.passed else EXIT_AUDIT_FAILED


def _stage_convert(request: RunRequest) -> int:
    from pipeline.convert import stage as convert
    from pipeline.report.terminal import print_findings

    if request.head is not None:  # the conversion runs in its child meanwhile: use the idle parent
        with profile.step("parent: import what the audit and the report use (while the conversion runs)"):
            _preload_modules()
        from pipeline.audit import oracle_ahead, stage as audit

        try:
            audit.start_oracle(request.source, request.artifacts)  # in a thread (audit/oracle_ahead.py)
        except Exception:  # noqa: BLE001 - only a head start: the audit runs the oracle itself and reports what fails
            oracle_ahead.discard()
    record = convert.run(request.source, request.artifacts, head=request.head)
    console.print(f"convert: {record.converter} {record.version} -> {', '.join(record.models.values())} ({record.seconds:.1f} s)")
    print_findings(record.tf_lint.to_json(), title="lint (TF side)", verbose=request.verbose)
    return EXIT_PASS


def _preload_modules() -> None:
    """Import the audit's and the report's libraries (LiteRT, matplotlib) ahead of their stages."""
    import ai_edge_litert.interpreter  # noqa: F401
    import pipeline.report.html  # noqa: F401 (matplotlib)


def _stage_audit(request: RunRequest) -> int:
    from pipeline.audit import stage as audit

    record = audit.run(request.source, request.artifacts, samples=request.samples, inputs_file=request.inputs,
                       layers=request.layers)
    console.print(f"audit: verdict {record.verdict} over {record.samples} samples")
    if not request.full_run and _has_report(request.artifacts):  # the old report would show the old verdict
        console.print("audit: re-rendering report.json, report.md and report.html from this audit")
        return _stage_report(request)
    if not request.full_run:  # run alone, the audit says where backends part ways (a full run's report does)
        from pipeline.report.terminal import print_where

        print_where({"localization": record.localization, "layers": record.layers, "tflite_layers": record.tflite_layers})
    return VERDICT_EXIT[record.verdict]


def _has_report(artifacts: ArtifactDir) -> bool:
    return (artifacts.root / "report.json").exists()


def _stale_report_line(name: str, request: RunRequest) -> str:
    """What a stage run alone leaves behind in an existing report, and the command that refreshes it."""
    source = request.source
    named = source.kind == "config" and source.path == (CONFIGS_DIR / f"{source.name}.yaml").resolve()
    model = source.name if named else source.path  # what resolve_source reads back as the same model
    out = request.artifacts.shown(request.artifacts.root)
    if name in ("export", "convert-tf"):
        command, what = f"python -m pipeline audit {model} --out {out}", "an audit of the previous files"
    else:
        command, what = f"python -m pipeline report {model} --out {out}", f"the previous {name} record"
    return f"note: report.json, report.md and report.html are stale (they show {what}); refresh them with: {command}"


def _stage_report(request: RunRequest, timings: dict | None = None) -> int:
    from pipeline import deploy
    from pipeline.report import stage as report

    record = report.run(request.source.name, request.artifacts, timings, verbose=request.verbose)
    deploy.write(request.source, request.artifacts)  # manifest.json and MODEL_CARD.md, from the records just written
    return VERDICT_EXIT[record["verdict"]]


STAGES: dict[str, Callable[[RunRequest], int]] = {
    "export": _stage_export, "validate": _stage_validate, "lint": _stage_lint, "convert-tf": _stage_convert,
    "audit": _stage_audit, "report": _stage_report,
}


def run_stage(name: str, request: RunRequest) -> int:
    """One stage alone, on what earlier stages wrote. The audit re-renders an existing report; any other
    stage but the report says in one line that the report no longer shows what the folder holds."""
    code = STAGES[name](request)
    if not request.full_run and name not in ("audit", "report") and _has_report(request.artifacts):
        console.print(_stale_report_line(name, request))
    return code


def run_all(request: RunRequest) -> int:
    """Every stage in order, in a fresh folder swapped in only when all of them finished.

    The conversion child starts at once (its imports overlap the export), and the first conversion
    strategy starts as soon as model.onnx exists (it overlaps validate and lint); see
    convert/head_start.py for how the order of what reaches the folder is kept."""
    from pipeline.audit import oracle_ahead
    from pipeline.convert import isolate, stage as convert
    from pipeline.runners import remote

    profile.begin()
    convert.prewarm(request.source)
    try:
        with fresh_folder(request.artifacts) as work:
            return _run_in(request.at(work))
    finally:
        isolate.discard_spare()
        remote.detach()  # the TF worker (runners/remote.py), if the head start's conversion became one
        oracle_ahead.discard()  # float64 runs started during the conversion that no audit took (after one sample)


def _run_in(request: RunRequest) -> int:
    timings: dict[str, float] = {}
    try:
        for name in ("export", "validate", "lint", "convert-tf", "audit"):
            start = time.perf_counter()
            console.rule(f"[bold]{name}")
            with profile.step(f"stage: {name.removesuffix('-tf')}"):
                code = _convert_or_explain(request) if name == "convert-tf" else run_stage(name, request)
            if name == "convert-tf" and code is not None:
                return code
            if name == "export":
                request = dataclasses.replace(request, head=_head_start(request))
            if name == "convert-tf" and request.head is not None:
                request.head.discard()
            raise_if_interrupted()
            timings[name.removesuffix("-tf")] = round(time.perf_counter() - start, 3)
        _repair_if_needed(request, timings)
        console.rule("[bold]report")
        with profile.step("stage: report"):
            code = _stage_report(request, timings)
        profile.write(request.artifacts.root, time.time())
        return code
    finally:
        if request.head is not None:
            request.head.discard()


def _head_start(request: RunRequest):
    """The first conversion strategy, started now that model.onnx exists (convert/head_start.py)."""
    from pipeline.convert import stage as convert

    return convert.start_early(request.source, request.artifacts)


def _repair_if_needed(request: RunRequest, timings: dict[str, float]) -> None:
    """Numeric fallbacks: when the TF backends fail while ONNX Runtime agrees, search for a repaired
    conversion (pipeline/repair/); a model that passed the audit costs nothing here."""
    from pipeline.repair.search import repair_if_needed

    start = time.perf_counter()
    if repair_if_needed(request.source, request.artifacts) is not None:
        timings["repair"] = round(time.perf_counter() - start, 3)


def _convert_or_explain(request: RunRequest) -> int | None:
    """Convert (with fallbacks). A model whose outputs ignore its inputs is inconclusive,
    also when onnx2tf folds it away."""
    artifacts = request.artifacts
    try:
        convert_with_fallbacks(request.source, artifacts, lambda name: run_stage(name, request),
                               given_onnx=request.onnx is not None)
        return None
    except ConversionError as exc:
        validate = artifacts.read_if_any(ValidateRecord)
        evidence = validate.evidence if validate else {}
        reasons = [f"'{name}': {reason}" for name, reason in evidence.items() if reason]
        if not evidence or len(reasons) < len(evidence):
            raise
        print(f"inconclusive: {'; '.join(reasons)}; the conversion then failed ({exc})", file=sys.stderr)
        return EXIT_INCONCLUSIVE


EXPORT_FALLBACKS = (
    ExportChoice("torchscript", 17, "the TorchScript exporter writes other op patterns (and keeps BatchNorm unfused in some models)"),
    ExportChoice("dynamo", 17, "an older opset makes the exporter decompose ops that onnx2tf 1.x handles better"),
)


def convert_with_fallbacks(source: Source, artifacts: ArtifactDir, run_stage: Callable[[str], None], given_onnx: bool) -> None:
    """Run convert-tf; on failure re-export with each fallback in turn. Raises the full story if all fail."""
    try:
        run_stage("convert-tf")
        return
    except ConversionError as exc:
        first = with_module(str(exc), source, artifacts)
        if source.kind != "config" or given_onnx:
            raise ConversionError(first) from None
    failures = [f"{_used(artifacts)}: {_without_log(first)}"]
    for choice in _choices(artifacts):
        try:
            _re_export(source, artifacts, choice)
            for stage in ("validate", "lint", "convert-tf"):
                run_stage(stage)
            return
        except PipelineError as exc:  # this fallback's export, validation or conversion failed: next one
            failures.append(f"{choice.exporter} opset {choice.opset}: {_without_log(with_module(str(exc), source, artifacts))}")
    log = artifacts.shown(artifacts.root / "convert.failed.log")
    raise ConversionError("conversion failed with every export and conversion strategy: " + " | ".join(failures)
                          + f"; every attempt's log: {log}")


def _without_log(message: str) -> str:
    """One failure's text without its "; full log: …" tail: the combined message names the log once."""
    return re.sub(r"; (full log|every attempt's log): \S+", "", message)


def _used(artifacts: ArtifactDir) -> str:
    record = artifacts.read(ExportRecord)
    return f"{record.exporter} opset {record.opset}"


def _choices(artifacts: ArtifactDir) -> list[ExportChoice]:
    record = artifacts.read(ExportRecord)
    return [c for c in EXPORT_FALLBACKS if (c.exporter, c.opset) != (record.exporter, record.opset)]


def _re_export(source: Source, artifacts: ArtifactDir, choice: ExportChoice) -> None:
    from pipeline.audit import oracle_ahead
    from pipeline.export import stage as export
    from pipeline.console import console

    console.rule(f"[bold]fallback: re-export with {choice.exporter}, opset {choice.opset}")
    oracle_ahead.wait()  # its PyTorch runs finish before the exporter traces the model
    export.run(source, artifacts, choice=choice)


def with_module(message: str, source: Source, artifacts: ArtifactDir) -> str:
    """Add the PyTorch module of the node a conversion failed on, when it can be told."""
    match = re.search(r"on node '([^']+)' \(([^)]+)\)", message)
    if not match or source.kind != "config" or not artifacts.onnx.exists():
        return message
    import onnx

    from pipeline.model.context import ModelContext
    from pipeline.model.torch_model import build_model

    model = onnx.load(str(artifacts.onnx))
    node = next((n for n in model.graph.node if n.name == match.group(1)), None)
    if node is None:
        return message
    where = ModelContext(model, build_model(source)).attribute(node)
    module = f"module {where.module}" if where.module else f"module unknown: {where.note}"
    return message.replace(match.group(0), f"on node '{match.group(1)}' ({match.group(2)}, {module})", 1)


def diagnose(args) -> int:
    """`python -m pipeline diagnose`: diagnose a hand-written Keras port, write diagnose.json, .md and .html,
    print the summary (or the JSON); exit 0 when the port is faithful, 1 when it is not."""
    from pipeline.artifacts.guard import locked
    from pipeline.diagnose import stage as diagnose_stage
    from pipeline.report.sections import diagnose as pages

    request = diagnose_stage.request_for(args)
    with locked(request.artifacts.root):
        record = diagnose_stage.run(request)
        pages.write_pages(record, request.artifacts)
        if request.json:
            print(json.dumps(finite(record.to_json()), indent=2, default=str, allow_nan=False))
        else:
            pages.print_summary(record, request.artifacts.root, console)
        return EXIT_PASS if record.faithful else EXIT_AUDIT_FAILED

