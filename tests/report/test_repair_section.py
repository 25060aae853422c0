"""pipeline/report/sections/repair.py: the report's "Repair" section, from repair.json."""
from __future__ import annotations

import json

from pipeline.artifacts.folder import ArtifactDir, write_json
from pipeline.artifacts.repair_record import BackendError, Divergence, RepairAttempt, RepairRecord
from pipeline.report import sections
from pipeline.report.sections import repair as render


def _record(winner: str | None) -> RepairRecord:
    before = [BackendError("keras", "output", "fail", 3.1, 2e-6, 1.5e6)]
    after = [BackendError("keras", "output", "pass", 9e-7, 2e-6, 0.45)] if winner else []
    entry = {"op_name": "to_first", "param_target": "attributes", "param_name": "perm", "values": [0, 1, 2, 3]}
    attempts = [RepairAttempt("identity-perm:to_first", "transpose-perm", "why", [entry], True, winner is not None, 12.0,
                              None if winner else "audit: keras 'output' still off by 2.2", 9e-7 if winner else 2.2),
                RepairAttempt("no-onnxsim", "strategy", "why", [], False, False, 3.0, "onnx2tf failed on node 'ln'")]
    return RepairRecord("keras failed", before, Divergence("keras", "to_first", "Transpose", "ln", 1e-6, 3.1, "own", []),
                        None, attempts[:1] if winner else attempts, winner, [entry] if winner else [], None, after,
                        None if winner else "all 2 candidates tried; none passed the audit", 12, 900.0, 15.0)


def test_record_round_trips_and_renders_a_repair():
    record = _record("identity-perm:to_first")
    again = RepairRecord.from_json(json.loads(json.dumps(record.to_json())))
    assert again == record and again.repaired
    lines = render.markdown(record.to_json())
    assert lines[1] == "## Repair"
    text = "\n".join(lines)
    assert "Transpose node `to_first` (module `ln`)" in text
    assert '"post_process_transpose_perm"' not in text and '"values":[0,1,2,3]' in text
    assert "repaired by candidate `identity-perm:to_first` after 1 candidate conversion(s)" in text
    assert 'id="repair"' in render.html(record.to_json())
    assert render.markdown(None) == [] and render.html(None) == ""


def test_no_winner_shows_the_closest_candidate_and_where_it_gave_up():
    record = _record(None)
    assert record.best().name == "identity-perm:to_first"
    text = "\n".join(render.markdown(record.to_json()))
    assert "not repaired (all 2 candidates tried; none passed the audit)" in text
    assert "the closest candidate, `identity-perm:to_first`, is still off by 2.2" in text
    assert "| 2 | no-onnxsim | strategy | failed |" in text


def test_the_section_is_read_from_repair_json_and_found_by_the_report(tmp_path):
    artifacts = ArtifactDir(tmp_path)
    assert sections.collect(artifacts)["repair"] is None
    write_json(artifacts.stage_record("repair"), _record("identity-perm:to_first"))
    collected = sections.collect(artifacts)["repair"]
    assert collected == json.loads(json.dumps(_record("identity-perm:to_first").to_json()))
    assert "## Repair" in sections.markdown({"repair": collected})
    assert any('id="repair"' in part for part in sections.html({"repair": collected}))


def test_a_repair_by_another_strategy_says_its_files_replace_the_originals_not_a_parameter_replacement():
    before = [BackendError("tf_saved_model", "output", "fail", 0.57, 7e-7, 8e5)]
    after = [BackendError("tf_saved_model", "output", "pass", 1e-6, 1e-6, 1.1)]
    won = RepairAttempt("onnx2tf-2", "strategy", "onnx2tf 2.x lowers ONNX by its own route", [], True, True, 21.0, None, 1e-6)
    record = RepairRecord("tf_saved_model failed", before, None, None, [won], "onnx2tf-2", [], None, after, None, 12, 900.0, 25.0)
    text = "\n".join(render.markdown(record.to_json()))
    assert ("what changed: the files of the conversion strategy `onnx2tf-2` replace the original's: onnx2tf 2.x lowers "
            "ONNX by its own route") in text
    assert "parameter replacement" not in text
