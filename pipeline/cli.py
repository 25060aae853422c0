"""Command line: `python -m pipeline <command> MODEL [--out DIR]`.

MODEL is a config name in configs/, a path to a YAML config, or an .onnx file.
Every error is one line on stderr and an exit code; --debug shows the traceback.
"""
from __future__ import annotations

import argparse
import errno
import os
import sys
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # keep TensorFlow's C++ INFO/WARNING chatter off the terminal

from pipeline.artifacts.folder import ArtifactDir  # noqa: E402
from pipeline.artifacts.guard import interrupted, locked, signals_as_interrupt  # noqa: E402
from pipeline.config import Source, resolve_source  # noqa: E402
from pipeline.errors import (  # noqa: E402
    EXIT_CODES_HELP, EXIT_INTERRUPTED, EXIT_STAGE_FAILED, PipelineError, first_line,
)
from pipeline.orchestrate import RunRequest, run_all, run_stage  # noqa: E402


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
            command.add_argument("--json", action="store_true", help="print lint.json's content on stdout instead of the summary")
        if name in ("audit", "convert"):
            command.add_argument("--onnx", help="audit this ONNX file (and the TF model converted from it) against the "
                                                "config's PyTorch model; artifacts go to artifacts/<name>-<file stem>")
        if name in ("lint", "convert-tf", "convert", "audit", "report"):
            command.add_argument("--verbose", action="store_true", help="list every lint info note, not only their counts")
        if name in ("convert", "audit"):
            command.add_argument("--samples", type=_positive_int, help="number of seeded input samples (default: the config's, 4)")
            command.add_argument("--inputs", help="a .npz keyed by input name with real data (one sample, or a leading sample axis)")
            command.add_argument("--layers", action="store_true", help="compare intermediate tensors layer by layer even when outputs agree")
    _add_batch(sub)
    _add_verify(sub)
    _add_diagnose(sub)
    return parser


def _add_diagnose(sub) -> None:
    text = "check a hand-written Keras port against the config's PyTorch model: culprit layers, error explained, --fix"
    command = sub.add_parser("diagnose", help=text, description=text, epilog="exit codes: 0 the port is faithful, "
                             "1 it is not, 2 bad usage or input", formatter_class=argparse.RawDescriptionHelpFormatter)
    command.add_argument("model", metavar="MODEL", help="config name in configs/ or a .yaml config")
    command.add_argument("--keras", required=True, metavar="PORT", help="the hand-written port (.keras, or .h5 saved by Keras 3)")
    command.add_argument("--fix", metavar="OUT.keras", help="write the corrected port here and prove it by rerunning")
    command.add_argument("--inputs", help="a .npz keyed by input name with real data (one sample, or a leading sample axis)")
    command.add_argument("--json", action="store_true", help="print diagnose.json on stdout")
    command.add_argument("--out", help="artifact folder (default: artifacts/<name>)")
    command.add_argument("--debug", action="store_true", help="show tracebacks")


def _add_verify(sub) -> None:
    text = "re-check every sha256 in manifest.json and rerun the shipped models on the saved inputs (no PyTorch)"
    command = sub.add_parser("verify", help=text, description=text, epilog=EXIT_CODES_HELP,
                             formatter_class=argparse.RawDescriptionHelpFormatter)
    command.add_argument("artifact_dir", metavar="ARTIFACT_DIR", help="a folder written by 'convert' (holds manifest.json)")
    command.add_argument("--debug", action="store_true", help="show tracebacks")


def _add_batch(sub) -> None:
    text = "audit many models: each runs every stage in its own process, on a local pool or Ray; writes batch.json/md/html"
    command = sub.add_parser("batch", help=text, description=text, epilog=EXIT_CODES_HELP,
                             formatter_class=argparse.RawDescriptionHelpFormatter)
    command.add_argument("models", nargs="+", metavar="MODEL",
                         help="config names, .yaml or .onnx files, globs ('configs/zoo/*.yaml') or folders of configs")
    command.add_argument("--jobs", type=_positive_int, help="models at a time (default: from the cores and memory)")
    command.add_argument("--executor", choices=("local", "ray"), default="local", help="local process pool, or Ray tasks")
    command.add_argument("--address", help="a Ray cluster to join (ray.init(address=...)); default: a local Ray instance")
    command.add_argument("--out", help="batch folder: one artifact folder per model, the batch report (default: artifacts/)")
    command.add_argument("--resume", action="store_true", help="skip models whose folder holds a complete run of the same config and versions")
    command.add_argument("--timeout", type=float, default=1800.0, help="seconds per model before it is killed (default: 1800)")
    command.add_argument("--memory-gb", action="append", metavar="[NAME=]GB",
                         help="memory limit per model (its processes are killed above it; Ray reserves it); "
                              "NAME=GB for one model; repeatable (default: 90%% of RAM as a limit, 2 GB reserved)")
    command.add_argument("--debug", action="store_true", help="show tracebacks")


def _batch(args) -> int:
    from pipeline.batch.limits import parse_memory
    from pipeline.batch.run import BatchRequest, run_batch

    return run_batch(BatchRequest(tuple(args.models), args.executor, args.jobs, args.address,
                                  Path(args.out) if args.out else None, args.resume, args.timeout,
                                  parse_memory(args.memory_gb)))


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        with signals_as_interrupt():
            return _dispatch(args)
    except KeyboardInterrupt:
        return _interrupted()
    except Exception as exc:
        if args.debug:
            raise
        if interrupted():  # raised while stopping (a child killed mid-answer, say): the run was interrupted
            print(f"note: while stopping: {_error_line(exc)}", file=sys.stderr)
            return _interrupted()
        print(f"error: {_error_line(exc)}", file=sys.stderr)
        return exc.exit_code if isinstance(exc, PipelineError) else EXIT_STAGE_FAILED


def _interrupted() -> int:
    print("interrupted: nothing was committed from this run; earlier artifacts are intact", file=sys.stderr)
    return EXIT_INTERRUPTED


def _error_line(exc: Exception) -> str:
    if isinstance(exc, PipelineError):
        return str(exc)
    if isinstance(exc, OSError):
        return _os_error(exc)
    # a bug of ours or a library's: still one line, the traceback on request
    return (f"internal error ({type(exc).__name__}: {first_line(exc)}); rerun with --debug for the traceback "
            "and report it")


def _dispatch(args) -> int:
    if args.command == "batch":
        return _batch(args)
    if args.command == "verify":
        from pipeline.deploy.verify import run_cli

        return run_cli(Path(args.artifact_dir))
    if args.command == "diagnose":
        from pipeline.orchestrate import diagnose

        return diagnose(args)
    source = resolve_source(args.model)
    artifacts = _artifacts_for(source, args)
    existed = artifacts.root.exists()
    artifacts.ensure_writable()
    request = RunRequest(
        source, artifacts, onnx=Path(args.onnx) if getattr(args, "onnx", None) else None,
        inputs=Path(args.inputs) if getattr(args, "inputs", None) else None, samples=getattr(args, "samples", None),
        layers=getattr(args, "layers", False), json=getattr(args, "json", False), verbose=getattr(args, "verbose", False),
    )
    try:
        with locked(artifacts.root):
            if args.command == "convert" or (args.command == "audit" and args.onnx):
                return run_all(request)
            return run_stage(args.command, request)
    finally:
        if not existed and artifacts.root.is_dir() and not any(artifacts.root.iterdir()):
            artifacts.root.rmdir()  # a run that failed before writing anything leaves no empty folder behind


def _os_error(exc: OSError) -> str:
    where = f" ({exc.filename})" if exc.filename else ""
    if exc.errno == errno.ENOSPC:
        return f"disk full while writing{where}; free some space and rerun: earlier artifacts are intact"
    return f"{exc.strerror or exc}{where}; check the path and its permissions"
