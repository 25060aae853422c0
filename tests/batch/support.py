"""Configs and specs for batch tests."""
from __future__ import annotations

from pathlib import Path

from pipeline.batch.models import expand_models
from pipeline.batch.task import TaskSpec
from tests.support import REPO

SEED_YAML = (REPO / "configs" / "seed_ym.yaml").read_text()


def write_config(folder: Path, name: str) -> Path:
    """A copy of seed_ym under another name (so another artifact folder)."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.yaml"
    path.write_text(SEED_YAML.replace("name: seed_ym", f"name: {name}"))
    return path


def specs_for(paths: list[Path], root: Path, timeout_s: float = 600.0, memory: int | None = None) -> list[TaskSpec]:
    return [TaskSpec(m, root, timeout_s, memory) for m in expand_models([str(p) for p in paths])]
