"""Expanding batch MODEL arguments: config names, .yaml and .onnx paths, globs and folders."""
from __future__ import annotations

import glob
import hashlib
from dataclasses import dataclass
from pathlib import Path

from pipeline.config import Source, resolve_source
from pipeline.errors import PipelineError, UsageError

CONFIG_SUFFIXES = (".yaml", ".yml")
GLOB_CHARS = frozenset("*?[")


@dataclass(frozen=True)
class BatchModel:
    """One model of a batch: the MODEL argument a `convert` child gets, and what identifies its config."""

    arg: str
    name: str
    path: Path
    config_sha256: str  # the config file plus the local files it names (model code, checkpoint)


def expand_models(args: list[str]) -> tuple[BatchModel, ...]:
    """Every model the arguments name, in order, each once. Raises UsageError naming the bad argument."""
    models: dict[str, BatchModel] = {}
    for arg in args:
        for model in _expand_one(arg):
            previous = models.get(model.name)
            if previous is not None and previous.path != model.path:
                raise UsageError(f"{arg}: model name '{model.name}' is also used by {previous.path}; "
                                 "two models cannot share an artifact folder, rename one (key 'name')")
            models.setdefault(model.name, model)
    if not models:
        raise UsageError("no models given; pass config names, .yaml or .onnx files, globs or folders of configs")
    return tuple(models.values())


def _expand_one(arg: str) -> list[BatchModel]:
    path = Path(arg)
    if path.is_dir():
        files = sorted(p for p in path.rglob("*") if p.suffix in (*CONFIG_SUFFIXES, ".onnx") and p.is_file())
        if not files:
            raise UsageError(f"{arg}: folder holds no .yaml config or .onnx file")
        return [_model(str(p)) for p in files]
    if GLOB_CHARS & set(arg):
        files = sorted(p for p in glob.glob(arg, recursive=True) if Path(p).is_file())
        if not files:
            raise UsageError(f"{arg}: the pattern matches no file; check the path")
        return [_model(p) for p in files]
    return [_model(arg)]


def _model(arg: str) -> BatchModel:
    try:
        source = resolve_source(arg)
    except PipelineError as exc:
        raise UsageError(str(exc)) from None
    return BatchModel(arg=str(source.path), name=source.name, path=source.path,
                      config_sha256=config_sha256(source))


def config_sha256(source: Source) -> str:
    """sha256 of the config file and of the local files it points at, so an edit to any of them counts."""
    digest = hashlib.sha256(source.path.read_bytes())
    for extra in _local_files(source):
        digest.update(extra.name.encode())
        digest.update(extra.read_bytes() if extra.is_file() else b"<missing>")
    return digest.hexdigest()


def _local_files(source: Source) -> list[Path]:
    config = source.config
    if config is None:
        return []
    files = []
    module = config.model.split(":")[0]
    if module.endswith(".py"):
        files.append(source.base_dir / module)
    if config.checkpoint:
        files.append(source.base_dir / config.checkpoint)
    return files
