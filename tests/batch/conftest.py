"""One real local batch per session, shared by the end-to-end and Ray tests."""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.batch.support import write_config
from tests.support import run_cli

SMALL = ("seed_ym", "stride2_bn_eps", "residual_file")


@dataclass(frozen=True)
class BatchRun:
    exit_code: int
    root: Path

    @property
    def batch(self) -> dict:
        return json.loads((self.root / "batch.json").read_text())

    @property
    def results(self) -> dict[str, dict]:
        return {r["model"]: r for r in self.batch["results"]}


@pytest.fixture(scope="session")
def local_batch(tmp_path_factory) -> BatchRun:
    """The three small configs plus a copy of seed_ym given an impossible memory limit, 2 jobs, local pool."""
    root = tmp_path_factory.mktemp("local_batch")
    starved = write_config(root.parent / "starved_cfg", "starved")
    code = run_cli("batch", *SMALL, str(starved), "--jobs", "2", "--out", str(root / "out"),
                   "--memory-gb", "starved=0.05")
    return BatchRun(code, root / "out")
