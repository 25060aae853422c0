"""`--resume`: a marker per finished model, so a rerun skips what is already complete.

The marker (`<artifacts>/batch.done.json`) is written when a task ends with a report. It
holds the config's sha256, the versions of the stack, the sha256 of report.json and the task
result. A model is skipped only when all three still match: an edited config, an upgraded
TensorFlow or a later `convert` into the same folder makes it run again.
"""
from __future__ import annotations

import json
from importlib import metadata
from pathlib import Path

from pipeline.artifacts.folder import sha256, write_json
from pipeline.batch.result import TaskResult
from pipeline.batch.task import TaskSpec

MARKER = "batch.done.json"
# The distributions a result depends on (report.json lists the first five), and this tool's own.
VERSIONED = {"torch": "torch", "onnx": "onnx", "onnxruntime": "onnxruntime", "tensorflow": "tensorflow-cpu",
             "onnx2tf": "onnx2tf", "pipeline": "pt2tf-pipeline"}


def stack_versions() -> dict[str, str | None]:
    """The versions a result depends on: the stack report.json lists, and this tool's own."""
    return {name: _version(dist) for name, dist in VERSIONED.items()}


def _version(dist: str) -> str | None:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return None


def write_marker(spec: TaskSpec, result: TaskResult, versions: dict[str, str | None]) -> None:
    """Record a run that ended with a report; runs without one are never skipped."""
    report = spec.artifacts / "report.json"
    if not result.has_report or not report.is_file():
        return
    write_json(spec.artifacts / MARKER, {
        "model": spec.model.name, "config_sha256": spec.model.config_sha256, "versions": versions,
        "report_sha256": sha256(report), "result": result.to_json(),
    })


def completed(spec: TaskSpec, versions: dict[str, str | None]) -> TaskResult | None:
    """The recorded result when the folder holds a complete run of this config on this stack, else None."""
    marker = _read(spec.artifacts / MARKER)
    report = spec.artifacts / "report.json"
    if marker is None or not report.is_file():
        return None
    same = (marker.get("config_sha256") == spec.model.config_sha256 and marker.get("versions") == versions
            and marker.get("report_sha256") == sha256(report))
    return TaskResult.from_json(marker["result"]) if same else None


def _read(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None
