"""Typed errors. Each carries the exit code the CLI turns it into.

Messages are one line: what is wrong, where, and what to do about it.
"""
from __future__ import annotations

import re

_ANSI = re.compile(r"\x1b\[[0-9;]*m")


def first_line(exc: BaseException, limit: int = 300) -> str:
    """The first non-empty line of an exception's text, without terminal colour codes."""
    lines = [line.strip() for line in _ANSI.sub("", str(exc)).splitlines() if line.strip()]
    return lines[0][:limit] if lines else ""


class PipelineError(Exception):
    """Base class: a problem the user can act on. Never shown with a traceback."""

    exit_code = 3


class UsageError(PipelineError):
    """Bad command-line arguments or an unusable MODEL argument."""

    exit_code = 2


class ConfigError(PipelineError):
    """The model config (YAML, model factory, checkpoint, inputs) is wrong."""

    exit_code = 2


class ArtifactError(PipelineError):
    """A stage needs an artifact that an earlier stage has not written."""

    exit_code = 3


class ExportError(PipelineError):
    """PyTorch to ONNX export failed with every exporter strategy."""

    exit_code = 3


class ValidationError(PipelineError):
    """The ONNX model is invalid or ONNX Runtime cannot run it."""

    exit_code = 3


class ConversionError(PipelineError):
    """The ONNX to TensorFlow conversion failed."""

    exit_code = 3


class ConversionCrashed(ConversionError):
    """The conversion process crashed in native code (a fatal signal: SIGSEGV, SIGABRT, ...)."""


class RunnerError(PipelineError):
    """A backend could not load a model or run it on the shared inputs."""

    exit_code = 3


EXIT_PASS = 0
EXIT_AUDIT_FAILED = 1
EXIT_USAGE = 2
EXIT_STAGE_FAILED = 3
EXIT_INCONCLUSIVE = 4
EXIT_BUSY = 5
EXIT_INTERRUPTED = 130

EXIT_CODES_HELP = """exit codes:
  0  every comparison passed
  1  the audit failed: a backend disagrees with the reference beyond tolerance,
     or lint found an error (lint alone: an error finding; validate alone: ORT vs PyTorch)
  2  bad usage or config (unknown model, bad YAML, wrong key, bad inputs file)
  3  a stage failed (export, validation, conversion, a backend could not run)
  4  inconclusive: the backends agree, but the outputs carry no evidence (vanishing,
     NaN, or independent of the input); the report says why and what to do
  5  another run is writing the same artifact folder (a lock); wait or pass another --out
  130 interrupted (Ctrl-C or SIGTERM); artifacts written by earlier runs are left intact"""
