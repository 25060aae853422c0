"""pipeline/orchestrate.py: a stage run alone says when the report no longer shows what the folder holds,
with a command that refreshes it (the audit re-renders it itself: tests/test_end_to_end.py)."""
from __future__ import annotations

import re
import shutil

import pytest

from pipeline.artifacts.folder import ArtifactDir
from pipeline.config import CONFIGS_DIR, resolve_source
from pipeline.orchestrate import RunRequest, _stale_report_line


@pytest.mark.parametrize("where", ["configs", "elsewhere"])
@pytest.mark.parametrize("stage, command", [("lint", "report"), ("validate", "report"), ("convert-tf", "audit"),
                                            ("export", "audit")])
def test_the_stale_line_names_a_command_that_reads_back_the_same_model(tmp_path, where, stage, command):
    model = "seed_ym" if where == "configs" else str(shutil.copy(CONFIGS_DIR / "seed_ym.yaml", tmp_path / "mine.yaml"))
    source = resolve_source(model)
    line = _stale_report_line(stage, RunRequest(source, ArtifactDir(tmp_path / "out")))
    assert line.startswith("note: report.json, report.md and report.html are stale")
    found = re.search(rf"refresh them with: python -m pipeline {command} (\S+) --out (\S+)$", line)
    assert found and found.group(2) == str(tmp_path / "out")
    assert resolve_source(found.group(1)).path == source.path
