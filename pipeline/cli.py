"""Command line: `python -m pipeline <command> MODEL [--out DIR]`.

MODEL is a config name in configs/, a path to a YAML config, or an .onnx file.
Every error is one line on stderr and an exit code; --debug shows the traceback.
"""
from __future__ import annotations

import argparse
import errno
import json
import os
import sys
import time
from pathlib import Path
from typing import Callable

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # keep TensorFlow's C++ INFO/WARNING chatter off the terminal

from pipeline.artifacts import ArtifactDir  # noqa: E402
from pipeline.config import Source, resolve_source  # noqa: E402
from pipeline.console import console  # noqa: E402
from pipeline.errors import (  # noqa: E402
    EXIT_AUDIT_FAILED, EXIT_CODES_HELP, EXIT_INCONCLUSIVE, EXIT_INTERRUPTED, EXIT_PASS, EXIT_STAGE_FAILED, ConversionError,
    PipelineError, UsageError, first_line,
)
from pipeline.run_guard import fresh_folder, locked, sigterm_as_interrupt  # noqa: E402

VERDICT_EXIT = {"pass": EXIT_PASS, "fail": EXIT_AUDIT_FAILED, "inconclusive": EXIT_INCONCLUSIVE}


def _stage_export(source: Source, artifacts: ArtifactDir, args) -> int:
    from pipeline import export

    record = export.run(source, artifacts)
    console.print(f"export: {record['exporter']} -> {artifacts.shown(artifacts.onnx)} (opset {record['opset']})")
    return EXIT_PASS


def _stage_validate(source: Source, artifacts: ArtifactDir, args) -> int:
    from pipeline import validate

    record = validate.run(source, artifacts)
    for c in record["comparisons"]:
        console.print(f"validate: {c['candidate']} vs {c['reference']} '{c['output']}': max_abs {c['max_abs']:.3g} -> {'pass' if c['passed'] else 'FAIL'}")
    console.print(f"validate: checker and shape inference passed for {artifacts.shown(artifacts.onnx)}")
    return EXIT_PASS if record["passed"] else EXIT_AUDIT_FAILED


def _stage_lint(source: Source, artifacts: ArtifactDir, args) -> int:
    from pipeline.lint.stage import run
    from pipeline.report import print_findings

    onnx_file = Path(args.onnx) if getattr(args, "onnx", None) else None
    if onnx_file is not None and not onnx_file.is_file():
        raise UsageError(f"--onnx {onnx_file}: file not found; check the path")
    if onnx_file is None and source.kind == "onnx" and not artifacts.onnx.exists():
        onnx_file = source.path  # an ONNX MODEL can be linted before any stage ran
    record = run(source, artifacts, onnx_file)
    if getattr(args, "json", False):
        print(json.dumps(record, indent=2))
    else:
        print_findings(record)
    return EXIT_PASS if record["passed"] else EXIT_AUDIT_FAILED


def _stage_convert(source: Source, artifacts: ArtifactDir, args) -> int:
    from pipeline import convert

    from pipeline.lint import count_findings
    from pipeline.lint.stage import run_tf
    from pipeline.report import print_findings

    record = convert.run(artifacts)
    console.print(f"convert: {record['converter']} {record['version']} -> {', '.join(record['models'].values())} ({record['seconds']:.1f} s)")
    lint = run_tf(source, artifacts)
    tf_findings = [f for f in lint["findings"] if f["rule"].startswith("tf_")]
    print_findings({"counts": count_findings(tf_findings), "findings": tf_findings, "notes": []}, title="lint (TF side)")
    return EXIT_PASS


def _stage_audit(source: Source, artifacts: ArtifactDir, args) -> int:
    from pipeline import audit

    inputs_file = Path(args.inputs) if getattr(args, "inputs", None) else None
    record = audit.run(source, artifacts, samples=getattr(args, "samples", None), inputs_file=inputs_file,
                       layers=getattr(args, "layers", False))
    console.print(f"audit: verdict {record['verdict']} over {record['samples']} samples")
    return VERDICT_EXIT[record["verdict"]]


def _stage_report(source: Source, artifacts: ArtifactDir, args, timings: dict | None = None) -> int:
    from pipeline import report

    record = report.run(source.name, artifacts, timings)
    return VERDICT_EXIT[record["verdict"]]


STAGE_COMMANDS: dict[str, Callable] = {
    "export": _stage_export, "validate": _stage_validate, "lint": _stage_lint, "convert-tf": _stage_convert,
    "audit": _stage_audit, "report": _stage_report,
}


def _run_all(source: Source, artifacts: ArtifactDir, args) -> int:
    timings: dict[str, float] = {}
    for name, command in list(STAGE_COMMANDS.items())[:-1]:
        start = time.perf_counter()
        console.rule(f"[bold]{name}")
        if name == "export" and getattr(args, "onnx", None):
            _import_given_onnx(source, artifacts, args)
        elif name == "convert-tf":
            code = _convert_or_explain(source, artifacts, args)
            if code is not None:
                return code
        else:
            command(source, artifacts, args)
        timings[name.removesuffix("-tf")] = round(time.perf_counter() - start, 3)
    console.rule("[bold]report")
    return _stage_report(source, artifacts, args, timings)


def _convert_or_explain(source: Source, artifacts: ArtifactDir, args) -> int | None:
    """Convert (with fallbacks). A model whose outputs ignore its inputs is inconclusive,
    also when onnx2tf folds it away."""
    from pipeline.fallbacks import convert_with_fallbacks

    def run_stage(name: str) -> None:
        STAGE_COMMANDS[name](source, artifacts, args)

    try:
        convert_with_fallbacks(source, artifacts, run_stage, given_onnx=bool(getattr(args, "onnx", None)))
        return None
    except ConversionError as exc:
        evidence = (artifacts.read_record_if_any("validate") or {}).get("evidence") or {}
        reasons = [f"'{name}': {reason}" for name, reason in evidence.items() if reason]
        if not evidence or len(reasons) < len(evidence):
            raise
        print(f"inconclusive: {'; '.join(reasons)}; the conversion then failed ({exc})", file=sys.stderr)
        return EXIT_INCONCLUSIVE


def _import_given_onnx(source: Source, artifacts: ArtifactDir, args) -> None:
    from pipeline import export

    if source.kind != "config":
        raise UsageError("--onnx needs a config MODEL (the PyTorch model to audit the file against)")
    onnx_file = Path(args.onnx)
    if not onnx_file.is_file():
        raise UsageError(f"--onnx {onnx_file}: file not found; check the path")
    record = export.run(source, artifacts, onnx_file=onnx_file)
    console.print(f"export: using the given {onnx_file} (opset {record['opset']}) instead of exporting")


def _artifacts_for(source: Source, args) -> ArtifactDir:
    # A file given with --onnx gets its own folder, so the pipeline's own artifacts stay intact.
    if getattr(args, "onnx", None) and args.command in ("audit", "convert") and not args.out:
        return ArtifactDir.for_model(f"{source.name}-{Path(args.onnx).stem}", None)
    return ArtifactDir.for_model(source.name, args.out)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m pipeline", description="Export PyTorch to ONNX, convert to TensorFlow, and audit the numbers.",
        epilog=EXIT_CODES_HELP, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="command")
    helps = {
        "convert": "run every stage: export, validate, lint, convert-tf, audit, report",
        "export": "PyTorch -> model.onnx and inputs.npz (an .onnx MODEL is imported instead)",
        "validate": "onnx checker, shape inference, ONNX Runtime vs PyTorch",
        "lint": "check BatchNorm/norm epsilon and padding in the ONNX graph against the PyTorch modules",
        "convert-tf": "model.onnx -> SavedModel, Keras and TFLite with onnx2tf",
        "audit": "run every backend on the shared inputs and compare with the reference",
        "report": "write report.json and report.md and print the summary",
    }
    for name, text in helps.items():
        command = sub.add_parser(name, help=text, description=text, epilog=EXIT_CODES_HELP,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
        command.add_argument("model", metavar="MODEL", help="config name in configs/, a .yaml config, or an .onnx file")
        command.add_argument("--out", help="artifact folder (default: artifacts/<name>)")
        command.add_argument("--debug", action="store_true", help="show tracebacks")
        if name == "lint":
            command.add_argument("--onnx", help="lint this ONNX file (made elsewhere) against the config's PyTorch model")
        if name in ("audit", "convert"):
            command.add_argument("--onnx", help="audit this ONNX file (and the TF model converted from it) against the "
                                                "config's PyTorch model; artifacts go to artifacts/<name>-<file stem>")
            command.add_argument("--json", action="store_true", help="print the findings as JSON on stdout")
        if name in ("convert", "audit"):
            command.add_argument("--samples", type=_positive_int, help="number of seeded input samples (default: the config's, 4)")
            command.add_argument("--inputs", help="a .npz keyed by input name with real data (one sample, or a leading sample axis)")
            command.add_argument("--layers", action="store_true", help="compare intermediate tensors layer by layer even when outputs agree")
    return parser


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        with sigterm_as_interrupt():
            return _dispatch(args)
    except PipelineError as exc:
        if args.debug:
            raise
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("interrupted: nothing was committed from this run; earlier artifacts are intact", file=sys.stderr)
        return EXIT_INTERRUPTED
    except OSError as exc:
        if args.debug:
            raise
        print(f"error: {_os_error(exc)}", file=sys.stderr)
        return EXIT_STAGE_FAILED
    except Exception as exc:  # a bug of ours or a library's: still one line, the traceback on request
        if args.debug:
            raise
        print(f"error: internal error ({type(exc).__name__}: {first_line(exc)}); rerun with --debug for the "
              "traceback and report it", file=sys.stderr)
        return EXIT_STAGE_FAILED


def _dispatch(args) -> int:
    source = resolve_source(args.model)
    artifacts = _artifacts_for(source, args)
    artifacts.ensure_writable()
    with locked(artifacts.root):
        if args.command == "convert" or (args.command == "audit" and args.onnx):
            with fresh_folder(artifacts) as work:
                return _run_all(source, work, args)
        return STAGE_COMMANDS[args.command](source, artifacts, args)


def _os_error(exc: OSError) -> str:
    where = f" ({exc.filename})" if exc.filename else ""
    if exc.errno == errno.ENOSPC:
        return f"disk full while writing{where}; free some space and rerun: earlier artifacts are intact"
    return f"{exc.strerror or exc}{where}; check the path and its permissions"
