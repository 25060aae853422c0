"""pipeline/export/stage.py: exporter strategies, their fallback, and what export.json records.

One real dynamo export (a few seconds) is shared by the tests that read its artifacts;
the fallback tests replace the dynamo strategy, so they only run the fast TorchScript one.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

import onnx
import pytest

from pipeline.export import stage as export
from pipeline.artifacts.folder import ArtifactDir
from tests.support import write_config
from pipeline.config import Source, load_config, resolve_source
from pipeline.errors import ConfigError, ExportError
from pipeline.inputs import load_npz

CONV_BN_FILE = """\
import torch
from torch import nn


class ConvBN(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1)
        self.bn = nn.BatchNorm2d(4)

    def forward(self, x):
        return self.bn(self.conv(x))


def build():
    torch.manual_seed(0)
    return ConvBN()


def build_linear():
    return nn.Linear(5, 2)  # wants inputs [..., 5]
"""


def make_source(folder: Path, factory: str = "build", shape: str = "[1, 3, 8, 8]", extra: str = "") -> Source:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "conv_bn.py").write_text(CONV_BN_FILE)
    import yaml

    config = write_config(folder / "conv_bn.yaml", f"conv_bn.py:{factory}", [{"name": "x", "shape": yaml.safe_load(shape)}],
                          samples=2, **(yaml.safe_load(extra) or {}))
    return load_config(config)


def read_record(artifacts: ArtifactDir) -> dict:
    return json.loads(artifacts.stage_record("export").read_text())


def fail(message: str):
    def strategy(request: export.ExportRequest) -> None:
        raise RuntimeError(message)
    return strategy


@pytest.fixture(scope="module")
def dynamo_export(tmp_path_factory) -> tuple[ArtifactDir, dict]:
    root = tmp_path_factory.mktemp("dynamo")
    artifacts = ArtifactDir(root / "art")
    record = export.run(make_source(root), artifacts).to_json()
    return artifacts, record


# --- the dynamo route -------------------------------------------------------

def test_dynamo_export_writes_model_inputs_and_record(dynamo_export):
    artifacts, record = dynamo_export
    assert sorted(p.name for p in artifacts.root.iterdir()) == ["export.json", "export.log", "inputs.npz", "model.onnx"]
    assert read_record(artifacts) == record
    assert record["route"] == "pytorch" and record["exporter"] == "dynamo"
    assert [(a["strategy"], a["ok"], a["error"]) for a in record["attempts"]] == [("dynamo", True, None)]
    assert record["outputs"] == ["output"] and record["reference"] == "pytorch"
    assert record["inputs"] == [{"name": "x", "shape": [1, 3, 8, 8], "dtype": "float32", "low": 0.0, "high": 1.0}]
    model = onnx.load(str(artifacts.onnx))
    onnx.checker.check_model(model)
    assert record["opset"] == next(o.version for o in model.opset_import if o.domain == "")
    assert [v.name for v in model.graph.input] == ["x"] and [v.name for v in model.graph.output] == ["output"]
    assert load_npz(artifacts.inputs)["x"].shape == (2 + 3, 1, 3, 8, 8)  # seeded samples, then 3 edge cases


def test_dynamo_nodes_carry_name_scopes(dynamo_export):
    artifacts, _ = dynamo_export
    model = onnx.load(str(artifacts.onnx))
    scopes = [{p.key: p.value for p in node.metadata_props}.get("pkg.torch.onnx.name_scopes") for node in model.graph.node]
    assert scopes and all(scopes), "every node maps back to a PyTorch module"
    assert any("'conv'" in s or "'bn'" in s for s in scopes)


# --- strategy fallback ------------------------------------------------------

def test_dynamo_failure_falls_back_to_torchscript_and_is_recorded(tmp_path, monkeypatch):
    monkeypatch.setitem(export.STRATEGIES, "dynamo", fail("dynamo cannot trace this\nlong details"))
    artifacts = ArtifactDir(tmp_path / "art")
    record = export.run(make_source(tmp_path), artifacts).to_json()
    assert record["exporter"] == "torchscript"
    assert read_record(artifacts)["exporter"] == "torchscript"
    dynamo, torchscript = record["attempts"]
    assert (dynamo["strategy"], dynamo["ok"], dynamo["error"]) == ("dynamo", False, "RuntimeError: dynamo cannot trace this")
    assert (torchscript["strategy"], torchscript["ok"], torchscript["error"]) == ("torchscript", True, None)
    assert record["opset"] == export.TORCHSCRIPT_DEFAULT_OPSET
    onnx.checker.check_model(str(artifacts.onnx))
    log = (artifacts.root / "export.log").read_text()
    assert "--- dynamo exporter failed ---" in log and "long details" in log


def test_configured_exporter_is_the_only_one_tried(tmp_path, monkeypatch):
    monkeypatch.setitem(export.STRATEGIES, "dynamo", fail("must not be called"))
    record = export.run(make_source(tmp_path, extra="exporter: torchscript\n"), ArtifactDir(tmp_path / "art")).to_json()
    assert [a["strategy"] for a in record["attempts"]] == ["torchscript"]


def test_every_exporter_failing_is_an_export_error_and_keeps_old_artifacts(tmp_path, monkeypatch):
    monkeypatch.setitem(export.STRATEGIES, "dynamo", fail("dynamo broke"))
    monkeypatch.setitem(export.STRATEGIES, "torchscript", fail("torchscript broke"))
    artifacts = ArtifactDir(tmp_path / "art")
    artifacts.root.mkdir()
    artifacts.onnx.write_bytes(b"last good run")
    with pytest.raises(ExportError, match=r"every exporter failed \(dynamo: RuntimeError: dynamo broke; "
                                          r"torchscript: RuntimeError: torchscript broke\); full log: .*/art/export\.failed\.log$"):
        export.run(make_source(tmp_path), artifacts)
    assert "dynamo broke" in (artifacts.root / "export.failed.log").read_text()
    assert artifacts.onnx.read_bytes() == b"last good run"
    assert not artifacts.stage_record("export").exists()


# --- configs the model rejects ----------------------------------------------

def test_model_rejecting_the_configured_inputs_is_a_config_error(tmp_path):
    source = make_source(tmp_path, factory="build_linear", shape="[1, 3]")
    artifacts = ArtifactDir(tmp_path / "art")
    with pytest.raises(ConfigError, match=r"conv_bn\.yaml: the model rejects the configured inputs \(x\[1, 3\]\): "
                                          r"RuntimeError: .*; fix 'inputs' in the config"):
        export.run(source, artifacts)
    assert not artifacts.onnx.exists()


def test_model_rejecting_the_inputs_is_a_config_error_even_with_outputs_configured(tmp_path, monkeypatch):
    monkeypatch.setitem(export.STRATEGIES, "dynamo", fail("skipped to keep the test fast"))
    source = make_source(tmp_path, factory="build_linear", shape="[1, 3]", extra="outputs: [y]\n")
    with pytest.raises(ConfigError, match=r"rejects the configured inputs"):
        export.run(source, ArtifactDir(tmp_path / "art"))


# --- the ONNX route ---------------------------------------------------------

def test_onnx_file_is_imported_instead_of_exported(tmp_path):
    path = Path(os.path.dirname(onnx.__file__)) / "backend/test/data/pytorch-converted/test_Conv2d_strided/model.onnx"
    artifacts = ArtifactDir(tmp_path / "art")
    record = export.run(resolve_source(str(path)), artifacts).to_json()
    assert (record["route"], record["reference"], record["opset"], record["attempts"]) == ("onnx", "onnxruntime", 13, [])
    assert record["notes"][0].startswith("upgraded from opset 6 to 13")
    assert record["inputs"] == [{"name": "0", "shape": [2, 3, 6, 6], "dtype": "float32", "low": -1.0, "high": 1.0}]
    assert load_npz(artifacts.inputs)["0"].shape == (4 + 3, 2, 3, 6, 6)  # seeded samples, then 3 edge cases
    onnx.checker.check_model(str(artifacts.onnx), full_check=True)


def _batch_free(path: Path, literal_batch: bool) -> Path:
    """A Conv over x[N, 3, 4, 4]; with `literal_batch`, a Reshape to [1, 2, 16] after it, which runs at N=1 only."""
    import numpy as np
    from onnx import TensorProto, helper, numpy_helper

    weight = numpy_helper.from_array(np.ones((2, 3, 1, 1), np.float32), "w")
    nodes = [helper.make_node("Conv", ["x", "w"], ["c" if literal_batch else "y"], name="conv")]
    inits = [weight]
    if literal_batch:
        inits.append(numpy_helper.from_array(np.array([1, 2, 16], np.int64), "flat"))
        nodes.append(helper.make_node("Reshape", ["c", "flat"], ["y"], name="flatten"))
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3, 4, 4])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)], inits)
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))
    return path


def test_an_onnx_files_free_axis_0_stays_dynamic_with_two_more_audited_sizes(tmp_path):
    artifacts = ArtifactDir(tmp_path / "art")
    record = export.run(resolve_source(str(_batch_free(tmp_path / "free.onnx", literal_batch=False))), artifacts)
    assert record.inputs[0].dynamic == {0: "N"} and record.shapes == [{"N": 3}, {"N": 2}]
    assert load_npz(artifacts.root / "inputs_N3.npz")["x"].shape == (4 + 3, 3, 3, 4, 4)
    assert any(n.startswith("kept dynamic: 'N' (input 'x' axis 0); audited at 1 and at N 3; N 2") for n in record.notes)


def test_a_free_axis_0_onnx_runtime_cannot_vary_stays_at_the_example_size_and_says_why(tmp_path):
    artifacts = ArtifactDir(tmp_path / "art")
    record = export.run(resolve_source(str(_batch_free(tmp_path / "literal.onnx", literal_batch=True))), artifacts)
    assert record.inputs[0].dynamic == {} and record.shapes == []
    (note,) = [n for n in record.notes if "free in the file" in n]
    assert note.startswith("input 'x' axis 0 ('N') is free in the file, but ONNX Runtime cannot run it at N 3 (")
    assert note.endswith("): audited at the example size only")
