"""pipeline/lint/stage.py: the lint stage runs every rule and writes lint.json."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from onnx import TensorProto, helper, numpy_helper

from pipeline.artifacts.folder import ArtifactDir
from pipeline.config import CONFIGS_DIR, Source, load_config
from pipeline.lint import stage
from pipeline.model.torch_model import build_model
from tests.lint.exports import export, load, nodes, set_attribute
from tests.support import tflite_pair

FINDING_KEYS = {"rule", "severity", "node", "op_type", "module", "expected", "actual", "message"}


@pytest.fixture(scope="module")
def source() -> Source:
    """Stride-2 convs with BatchNorm eps 1e-3 and 1e-4: a correct model that looks suspicious."""
    return load_config(CONFIGS_DIR / "stride2_bn_eps.yaml")


@pytest.fixture(scope="module")
def exported(source, tmp_path_factory):
    model = build_model(source)
    (spec,) = source.config.inputs
    return export(model, (torch.rand(*spec.shape) * 2 - 1,), tmp_path_factory.mktemp("stage") / "model.onnx", "dynamo")


def read_lint_json(artifacts: ArtifactDir) -> dict:
    return json.loads((artifacts.root / "lint.json").read_text())


def test_correct_export_passes_and_writes_lint_json(source, exported, tmp_path):
    artifacts = ArtifactDir(tmp_path)
    exported_copy = artifacts.onnx
    exported_copy.write_bytes(exported.read_bytes())

    record = stage.run(source, artifacts).to_json()

    written = read_lint_json(artifacts)
    assert written == record
    assert written["passed"] is True and written["counts"]["error"] == 0
    assert written["onnx"] == str(exported_copy) and written["notes"] == []
    assert all(FINDING_KEYS <= set(f) for f in written["findings"])
    assert {f["severity"] for f in written["findings"]} <= {"warning", "info"}


def test_tampered_pads_fail_and_are_recorded(source, exported, tmp_path):
    model = load(exported)
    conv = nodes(model, "Conv")[0]
    set_attribute(conv, "pads", [0, 0, 1, 1])
    tampered = tmp_path / "tampered.onnx"
    tampered.write_bytes(model.SerializeToString())
    artifacts = ArtifactDir(tmp_path / "artifacts")

    record = stage.run(source, artifacts, onnx_file=tampered).to_json()

    written = read_lint_json(artifacts)
    assert written["passed"] is False and written["counts"]["error"] == 1
    (error,) = [f for f in written["findings"] if f["severity"] == "error"]
    assert {key: error[key] for key in FINDING_KEYS - {"message"}} == {
        "rule": "pads", "severity": "error", "node": conv.name, "op_type": "Conv", "module": "stem.0",
        "expected": "[1, 1, 1, 1]", "actual": "[0, 0, 1, 1]"}
    assert "TF 'SAME' placement" in error["message"]
    assert written["findings"][0] == error  # errors come first
    assert record["onnx"] == str(tampered)


def test_onnx_route_lints_without_a_pytorch_model(tmp_path):
    conv = helper.make_node("Conv", ["x", "w"], ["y"], name="conv", kernel_shape=[3, 3], strides=[2, 2], auto_pad="SAME_LOWER")
    graph = helper.make_graph([conv], "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 2, 8, 8])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
                              [numpy_helper.from_array(np.ones((2, 2, 3, 3), np.float32), "w")])
    path = tmp_path / "same_lower.onnx"
    path.write_bytes(helper.make_model(graph, producer_name="elsewhere").SerializeToString())
    artifacts = ArtifactDir(tmp_path / "artifacts")

    record = stage.run(Source(kind="onnx", path=path, name="same_lower"), artifacts, onnx_file=path).to_json()

    assert read_lint_json(artifacts) == record
    assert record["passed"] is False and record["notes"] == [stage.NO_MODEL_NOTE]
    (finding,) = record["findings"]
    assert (finding["rule"], finding["severity"], finding["node"], finding["module"]) == ("auto_pad", "error", "conv", None)


def test_the_onnx_route_lints_without_importing_torch(tmp_path):
    """No PyTorch model, no torch: its import (about 1 s) would only compete with TensorFlow's in a full run."""
    import subprocess
    import sys

    from tests.support import REPO

    conv = helper.make_node("Conv", ["x", "w"], ["y"], name="conv", kernel_shape=[3, 3], pads=[1, 1, 1, 1])
    graph = helper.make_graph([conv], "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 2, 8, 8])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
                              [numpy_helper.from_array(np.ones((2, 2, 3, 3), np.float32), "w")])
    path = tmp_path / "model.onnx"
    path.write_bytes(helper.make_model(graph, producer_name="pytorch").SerializeToString())
    code = ("import sys; from pipeline.cli import main; "
            f"code = main(['lint', {str(path)!r}, '--out', {str(tmp_path / 'out')!r}]); print(code, 'torch' in sys.modules)")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, timeout=120)
    assert result.stdout.strip().splitlines()[-1] == "0 False", result.stderr[-2000:]


def test_the_tf_phase_reads_the_tflite_files_while_the_worker_reads_the_savedmodel(source, exported, tmp_path, monkeypatch):
    """run_tf sends the SavedModel to the TF worker first, reads the ONNX and TFLite files meanwhile, and takes the
    worker's answer before any rule runs; each TFLite file is read once, the rules included."""
    import tensorflow as tf

    from pipeline.lint import tflite_graph
    from pipeline.lint.tf_graph import TFGraph
    from pipeline.runners import remote

    artifacts = ArtifactDir(tmp_path)
    artifacts.onnx.write_bytes(exported.read_bytes())
    events = []

    def start(fn, *args):
        events.append(("worker starts", fn.__name__))
        return lambda: events.append(("worker answers", fn.__name__)) or TFGraph([], {})

    real_read = tflite_graph.TFLiteGraph.read
    monkeypatch.setattr(remote, "start", start)
    monkeypatch.setattr(tflite_graph.TFLiteGraph, "read",
                        classmethod(lambda cls, path: events.append(("read", path.name)) or real_read.__func__(cls, path)))
    files = tflite_pair(tmp_path, "model", tf.function(lambda x: x + 1.0, input_signature=[tf.TensorSpec([4])]))
    stage.run_tf(source, artifacts, tmp_path / "saved_model", files)
    assert events == [("worker starts", "from_saved_model"), ("read", "model_fp32.tflite"),
                      ("read", "model_fp16.tflite"), ("worker answers", "from_saved_model")]
