"""The convert stage with two converters: the strategy list decides when onnx2tf 2.x runs, and a failure
says which converter failed, on which node, and what the other one made of the model."""
from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from pipeline.artifacts.records import Attempt
from pipeline.convert import stage as convert
from pipeline.repair.candidates import candidates
from pipeline.convert.stage import SECOND_CONVERTER, strategies
from pipeline.converters import get_converter
from pipeline.converters.onnx2tf_v2 import Onnx2TFV2
from pipeline.inputs import TensorSpec
from pipeline.runners.tensorflow import _output_key
from pipeline.runners.tf_io import TensorBinding
from pipeline.runners.layout import Layout
from tests.repair.test_repair import CHANNELS_LAST, _channels_last_graph, _converted
from tests.converters.test_onnx2tf_v2 import gather_elements
from tests.support import run_cli

SPECS = [TensorSpec("x", (1, 3, 8, 8), "float32")]
V1, V2 = "onnx2tf 1.29.24", "onnx2tf 2.6.9"
GATHER = "onnx2tf 1.29.24 failed on node 'c2p_gather' (GatherElements): ValueError: Output tensors of a Functional model"


def test_onnx2tf_2x_runs_after_every_1x_strategy():
    listed = strategies(SPECS)
    assert [s.converter for s in listed[:-1]] == ["onnx2tf"] * (len(listed) - 1)
    assert (listed[-1].name, listed[-1].converter) == (SECOND_CONVERTER, "onnx2tf2")
    assert all(get_converter(s.converter).name == s.converter for s in listed)


def test_the_repair_search_tries_the_other_converter_before_any_layout_candidate():
    base = strategies(SPECS)[0]
    listed = candidates(_channels_last_graph(), [], base, SPECS)
    assert (listed[0].name, listed[0].kind, listed[0].strategy.converter) == (SECOND_CONVERTER, "strategy", "onnx2tf2")
    assert [c.name for c in listed].count(SECOND_CONVERTER) == 1
    assert SECOND_CONVERTER not in [c.name for c in candidates(_channels_last_graph(), [], base, SPECS, (SECOND_CONVERTER,))]


def test_a_model_2x_made_gets_no_second_2x_conversion_but_its_1x_strategies_not_yet_failed():
    second = strategies(SPECS)[-1]
    failed = tuple(s.name for s in strategies(SPECS)[:2])
    listed = candidates(_channels_last_graph(), [], second, SPECS, failed)
    assert SECOND_CONVERTER not in [c.name for c in listed if c.kind == "strategy"]
    assert [c.name for c in listed[:2]] == ["keep-nchw-inputs", "auto-replacement-json"]


def test_the_failure_says_whether_the_other_converter_handles_the_model(tmp_path: Path):
    log = tmp_path / "convert.failed.log"
    attempts = [Attempt("default", False, 1.0, f"{GATHER}; full log: x", V1),
                Attempt("onnx2tf-2", False, 1.0, "onnx2tf 2.6.9 failed on node 'c2p_gather' (GatherElements): boom; full log: x", V2)]
    message = convert._all_failed(attempts, log)
    assert message.startswith(f"every conversion strategy failed (default, onnx2tf-2); the cause: {GATHER}; onnx2tf 2.6.9 fails "
                              "on it too (onnx2tf 2.6.9 failed on node 'c2p_gather' (GatherElements): boom); try another exporter")
    assert message.endswith(f"every attempt's log: {log}")
    missing = Onnx2TFV2(tmp_path / "absent").available()
    attempts[1] = Attempt("onnx2tf-2", False, 0.0, missing, "onnx2tf2 not installed")
    assert f"the cause: {GATHER}; {missing}; try another" in convert._all_failed(attempts, log)
    assert f"{GATHER}; no other converter than {V1} was tried; try" in convert._all_failed(attempts[:1], log)


def test_a_model_the_second_converter_made_says_which_failed_where():
    attempts = [Attempt("default", False, 1.0, f"{GATHER}; full log: x", V1), Attempt("onnx2tf-2", True, 2.0, None, V2)]
    assert convert._other_converter_note(attempts) == [
        f"{V1} failed ({GATHER}); {V2} converted the model (strategy 'onnx2tf-2'): its files are shipped and audited like any other"]
    assert convert._other_converter_note([Attempt("default", True, 1.0, None, V1)]) == []


def test_an_unavailable_converter_is_said_once(monkeypatch, tmp_path):
    monkeypatch.setenv("PIPELINE_ONNX2TF2_ENV", str(tmp_path / "absent"))
    notes = convert._unavailable_notes(strategies(SPECS))
    assert len(notes) == 1 and notes[0].startswith("onnx2tf 2.x is not available: no side environment at")
    assert notes[0].endswith("it cannot stand in when another converter fails or is caught wrong")


def test_saved_model_outputs_are_read_by_name_or_by_position_in_older_folders():
    binding = TensorBinding("logits", "logits", 1, Layout(None, "shape"))
    assert _output_key({"hidden": 0, "logits": 1}, binding) == "logits"  # both converters' keys: the config's names
    assert _output_key({"output_0": 0, "output_1": 1}, binding) == "output_1"  # onnx2tf 1.x's own keys, older folders
    named_by_default = TensorBinding("output_1", "output_1", 1, Layout(None, "shape"))  # `outputs:` left out, two outputs
    assert _output_key({"output_0": 0, "output_1": 1}, named_by_default) == "output_1"


# --- end to end: a 1.x model the audit catches wrong, repaired by onnx2tf 2.x ---------------------

@pytest.mark.slow
@pytest.mark.skipif(Onnx2TFV2().available() is not None, reason=str(Onnx2TFV2().available()))
def test_a_wrong_1x_model_is_replaced_by_2x_before_any_layout_candidate(tmp_path_factory, no_network):
    """ConvNeXt's LayerNorm between permutes: 1.29's float32 TF models are off (tests/repair/test_repair.py); 2.x's
    files, the first candidate, pass the same audit and are shipped, and every record says which converter made them."""
    run = _converted(tmp_path_factory, "cl_ln_2x", "channels_last", CHANNELS_LAST, 20)
    assert run.code == 0
    repair = json.loads((run.root / "repair.json").read_text())
    assert any(e["verdict"] == "fail" for e in repair["before"] if e["backend"] != "tflite_fp16")  # 1.x's were wrong
    assert repair["winner"] == SECOND_CONVERTER and len(repair["attempts"]) == 1 and repair["entries"] == []
    convert_record = json.loads((run.root / "convert.json").read_text())
    assert (convert_record["converter"], convert_record["strategy"]) == ("onnx2tf2", f"repair-1-{SECOND_CONVERTER}")
    assert convert_record["made_by"]["tflite_fp32"].endswith("(flatbuffer_direct)")
    assert convert_record["attempts"][0]["converter"].startswith("onnx2tf 1.")
    audit = json.loads((run.root / "audit.json").read_text())
    assert audit["verdict"] == "pass" and {"tf_saved_model", "tflite_fp32"} <= {c["candidate"] for c in audit["comparisons"]}
    report = json.loads((run.root / "report.json").read_text())
    assert report["conversion"]["made_by"] == convert_record["made_by"]
    assert any(note.startswith("files made by: tf_saved_model: onnx2tf 2.") for note in report["notes"])
    assert report["versions"]["converter"] == f"onnx2tf2 {convert_record['version']}"
    manifest = json.loads((run.root / "manifest.json").read_text())
    shipped = {m["backend"]: m.get("made_by") for m in manifest["models"]}
    assert shipped["tflite_fp32"] == convert_record["made_by"]["tflite_fp32"] and shipped["onnxruntime"] is None


def _with_dft(path: Path) -> Path:
    """The GatherElements model (1.29 fails on it) with a DFT on its output, which 2.6.9 writes as a custom op its
    SavedModel export refuses: neither converter handles this one."""
    model = onnx.load(str(gather_elements(path.with_name("gather.onnx"))))
    model.graph.initializer.append(numpy_helper.from_array(np.array([1, 72, 1], np.int64), "seq"))
    model.graph.node.extend([helper.make_node("Reshape", ["y", "seq"], ["f"], name="to_signal"),
                             helper.make_node("DFT", ["f"], ["spectrum"], name="dft_scores")])
    del model.graph.output[:]
    model.graph.output.extend([helper.make_tensor_value_info("spectrum", TensorProto.FLOAT, [1, 72, 2])])
    onnx.save(model, str(path))
    return path


@pytest.mark.slow
@pytest.mark.skipif(Onnx2TFV2().available() is not None, reason=str(Onnx2TFV2().available()))
def test_a_model_1x_cannot_convert_is_converted_by_2x_and_audited(tmp_path, no_network):
    out = tmp_path / "out"
    assert run_cli("convert", str(gather_elements(tmp_path / "gather.onnx")), "--out", str(out)) == 0
    record = json.loads((out / "convert.json").read_text())
    assert (record["converter"], record["strategy"]) == ("onnx2tf2", SECOND_CONVERTER)
    failed = [a for a in record["attempts"] if a["converter"] and a["converter"].startswith("onnx2tf 1.")]
    assert failed and all("on node 'c2p_gather' (GatherElements)" in a["error"] for a in failed)
    assert any(note.startswith("onnx2tf 1.") and "converted the model (strategy 'onnx2tf-2')" in note for note in record["notes"])
    assert set(record["made_by"]) == {"tf_saved_model", "tflite_fp32", "tflite_fp16"}
    assert json.loads((out / "audit.json").read_text())["verdict"] == "pass"
    assert not [p.name for p in out.iterdir() if p.is_dir() and p.name in {s.name for s in strategies(SPECS)}]


@pytest.mark.slow
@pytest.mark.skipif(Onnx2TFV2().available() is not None, reason=str(Onnx2TFV2().available()))
def test_when_both_converters_fail_the_error_names_each_ones_node(tmp_path, capsys, no_network):
    assert run_cli("convert", str(_with_dft(tmp_path / "dft.onnx")), "--out", str(tmp_path / "out")) == 3
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1
    assert re.search(r"the cause: onnx2tf 1\.\d+\.\d+ failed on node 'c2p_gather' \(GatherElements\): .*; onnx2tf 2\.\d+\.\d+ "
                     r"fails on it too \(onnx2tf 2\.\d+\.\d+ failed on node 'dft_scores' \(DFT\): .*\); try another exporter", err[0])
