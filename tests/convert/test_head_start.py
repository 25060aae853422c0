"""The first conversion starts right after the export, and what it makes reaches the folder only
in the convert stage's turn; a run that stops earlier leaves no trace of it."""
from __future__ import annotations

import json
import os

import pytest

from pipeline.artifacts.folder import ArtifactDir
from pipeline.convert import isolate
from pipeline.convert import stage as convert
from pipeline.convert.head_start import FOLDER
from pipeline.errors import ValidationError
from pipeline.validate import stage as validate
from tests.support import run_cli

pytestmark = pytest.mark.slow


def test_a_full_run_converts_with_a_head_start_and_leaves_no_folder_of_it(seed_run):
    assert seed_run.exit_code == 0
    log = (seed_run.root / "convert.log").read_text()
    assert "strategy 'default'" in log and "(started right after the export)" in log
    record = json.loads((seed_run.root / "convert.json").read_text())
    assert [a["strategy"] for a in record["attempts"]] == ["default"] and record["attempts"][0]["ok"]
    assert not (seed_run.root / FOLDER).exists()


def test_the_profile_times_the_stages_and_onnx2tfs_outputs_in_the_child(seed_run):
    profile = json.loads((seed_run.root / "profile.json").read_text())
    steps = {(s["step"], s["child"]) for s in profile["steps"]}
    for stage in ("export", "validate", "lint", "convert", "audit", "report"):
        assert (f"stage: {stage}", False) in steps
    for part in ("onnx2tf: SavedModel", "onnx2tf: Keras v3 file", "onnx2tf: TFLite fp32", "onnx2tf: TFLite fp16"):
        assert (part, True) in steps
    assert all(s["seconds"] >= 0 and s["start"] >= 0 for s in profile["steps"])
    export = next(s for s in profile["steps"] if s["step"] == "stage: export")
    conversion = next(s for s in profile["steps"] if s["step"] == "onnx2tf: SavedModel")
    assert conversion["start"] >= export["start"] + export["seconds"], "the conversion starts only once the export is written"


def test_the_float64_oracle_runs_while_the_conversion_runs_and_the_audit_takes_them(seed_run):
    profile = json.loads((seed_run.root / "profile.json").read_text())
    first = {}
    for s in profile["steps"]:
        first.setdefault(s["step"], s)
    convert, audit = first["stage: convert"], first["stage: audit"]
    for backend in ("pytorch_fp64", "pytorch_fp64_perturbed_1", "pytorch_fp64_perturbed_2"):
        run = first[f"backend {backend}: run 7 samples"]
        assert convert["start"] <= run["start"] < audit["start"], f"{backend} ran ahead, in the convert stage's wait"
        assert sum(s["step"] == f"backend {backend}: run 7 samples" for s in profile["steps"]) == 1, "and only once"
    report = json.loads((seed_run.root / "report.json").read_text())
    assert report["oracle"]["backend"] == "pytorch_fp64" and report["verdict"] == "pass"


def test_a_failed_checker_stops_the_head_start_and_commits_nothing(seed_copy, monkeypatch, capsys):
    before = sorted(p.name for p in seed_copy.iterdir())

    def broken(source, artifacts):
        raise ValidationError(f"{artifacts.onnx}: onnx checker: simulated")

    monkeypatch.setattr(validate, "run", broken)
    assert run_cli("convert", "seed_ym", "--out", str(seed_copy)) != 0
    assert "onnx checker: simulated" in capsys.readouterr().err
    assert sorted(p.name for p in seed_copy.iterdir()) == before
    assert not isolate._running and isolate._spare.held is None  # noqa: SLF001 (no conversion child left behind)


def test_a_head_start_serves_only_the_file_and_strategy_it_converted(seed_copy, monkeypatch):
    from pipeline.config import resolve_source
    from pipeline.convert import head_start

    converted = []
    monkeypatch.setattr(head_start, "run_kept", lambda fn, args, limits, what: (converted.append(args[0]), None))
    artifacts = ArtifactDir(seed_copy)
    head = convert.start_early(resolve_source("seed_ym"), artifacts)
    head._thread.join()  # noqa: SLF001 (the stand-in conversion returns at once)
    assert converted == [artifacts.onnx]
    assert head.serves("default", artifacts.onnx)
    assert not head.serves("no-onnxsim", artifacts.onnx)
    os.utime(artifacts.onnx, ns=(1, 1))  # as a re-export (a fallback) would leave it: another file
    assert not head.serves("default", artifacts.onnx), "a re-exported file is converted again"
    head.discard()
    assert not (seed_copy / FOLDER).exists()
