"""The artifact folder: where each stage writes, and how writes stay safe.

Every stage writes into a private staging folder and moves its files into the
artifact folder only when it succeeds, so a failed or interrupted run leaves the
artifacts of the last good run intact.
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import math
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, TypeVar

from pipeline.errors import ArtifactError, UsageError

REPO_ROOT = Path(__file__).resolve().parents[2]  # pipeline/artifacts/folder.py -> the repository
DEFAULT_ROOT = REPO_ROOT / "artifacts"

# Folders whose files are merged on commit instead of replaced as a whole.
MERGED_DIRS = ("outputs",)

R = TypeVar("R")


@dataclass(frozen=True)
class ArtifactDir:
    """Named paths inside one model's artifact folder."""

    root: Path
    final: Path | None = None  # where a full run's folder is swapped in; paths are shown there

    @classmethod
    def for_model(cls, name: str, out: str | None) -> "ArtifactDir":
        root = Path(out) if out else DEFAULT_ROOT / name
        return cls(root.resolve())

    onnx = property(lambda self: self.root / "model.onnx")
    inputs = property(lambda self: self.root / "inputs.npz")
    saved_model = property(lambda self: self.root / "saved_model")
    keras = property(lambda self: self.root / "model.keras")
    tflite_fp32 = property(lambda self: self.root / "model_float32.tflite")
    tflite_fp16 = property(lambda self: self.root / "model_float16.tflite")
    convert_log = property(lambda self: self.root / "convert.log")
    outputs = property(lambda self: self.root / "outputs")
    report_json = property(lambda self: self.root / "report.json")
    report_md = property(lambda self: self.root / "report.md")

    def shown(self, path: Path) -> Path:
        """The path a user will find this file at once the run is over (a file outside the folder: its own)."""
        return (self.final / path.relative_to(self.root)) if self.final and path.is_relative_to(self.root) else path

    def stage_record(self, stage: str) -> Path:
        """Where a stage writes its own summary (export.json, validate.json, ...)."""
        return self.root / f"{stage}.json"

    def output_file(self, backend: str) -> Path:
        return self.outputs / f"{backend}.npz"

    def require(self, path: Path, stage: str) -> Path:
        """Fail clearly when an earlier stage's artifact is missing."""
        if not path.exists():
            raise ArtifactError(
                f"{path}: missing; run the '{stage}' stage first "
                f"(python -m pipeline {stage} MODEL --out {self.root})"
            )
        return path

    def read(self, record_type: type[R]) -> R:
        """The typed record an earlier stage wrote (records.ExportRecord, …); fails clearly if it has not run."""
        path = self.require(self.stage_record(record_type.STAGE), record_type.STAGE)
        return record_type.from_json(json.loads(path.read_text()))

    def read_if_any(self, record_type: type[R]) -> R | None:
        path = self.stage_record(record_type.STAGE)
        return record_type.from_json(json.loads(path.read_text())) if path.exists() else None

    @contextlib.contextmanager
    def staging(self) -> Iterator[Path]:
        """Yield a private folder; move its contents into root only on success."""
        self.ensure_writable()
        stage_dir = Path(tempfile.mkdtemp(prefix=".staging-", dir=self.root))
        try:
            yield stage_dir
            _commit(stage_dir, self.root)
        finally:
            shutil.rmtree(stage_dir, ignore_errors=True)

    def ensure_writable(self) -> None:
        try:
            self.root.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise UsageError(f"{self.root}: cannot create the output folder ({exc.strerror}); choose another --out") from None
        if not os.access(self.root, os.W_OK):
            raise UsageError(f"{self.root}: output folder is not writable; choose another --out or fix its permissions")


def _commit(stage_dir: Path, root: Path) -> None:
    for entry in sorted(stage_dir.iterdir()):
        target = root / entry.name
        if entry.is_dir() and entry.name in MERGED_DIRS:
            target.mkdir(exist_ok=True)
            _commit(entry, target)
        elif entry.is_dir():
            replace_dir(entry, target)
        else:
            os.replace(entry, target)


def replace_dir(new: Path, target: Path) -> None:
    """Put folder `new` where `target` is; the old one is removed only once the new one is in place."""
    # rename() is atomic for each step.
    old = target.with_name(f".{target.name}.old-{os.getpid()}")
    if target.exists():
        os.replace(target, old)
    os.replace(new, target)
    shutil.rmtree(old, ignore_errors=True)


def write_json(path: Path, payload: Any) -> None:
    """Write strict JSON atomically (a temp file, then rename). NaN and infinities become null.
    A record (anything with to_json) is written as its JSON."""
    if hasattr(payload, "to_json"):
        payload = payload.to_json()
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(finite(payload), indent=2, default=_json_default, allow_nan=False) + "\n")
    os.replace(tmp, path)


def finite(value: Any) -> Any:
    """Strict-JSON values: infinities and NaN (an output of another shape, say) become None."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [finite(v) for v in value]
    return value


def _json_default(value: Any) -> Any:
    if isinstance(value, Path):
        return str(value)
    if hasattr(value, "item"):
        return value.item()
    if hasattr(value, "tolist"):
        return value.tolist()
    raise TypeError(f"cannot serialise {type(value).__name__} to JSON")


def identity(path: Path) -> tuple[int, int, int, int]:
    """Which file this is, without reading it: device, inode, size, modification time. A file renamed
    within the artifact folder keeps it; a rewritten or replaced file does not."""
    stat = path.stat()
    return stat.st_dev, stat.st_ino, stat.st_size, stat.st_mtime_ns


def sha256(path: Path) -> str:
    """sha256 of a file, or of every file under a folder in sorted order."""
    digest = hashlib.sha256()
    files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
    for file in files:
        if path.is_dir():
            digest.update(str(file.relative_to(path)).encode())
        with file.open("rb") as handle:
            for chunk in iter(lambda: handle.read(1 << 20), b""):
                digest.update(chunk)
    return digest.hexdigest()
