"""Dynamic shapes end to end through the CLI: one conversion of the fully convolutional zoo model with
dynamic batch, height and width, audited at three shapes, and its files loaded outside the pipeline at
new shapes; a model that bakes batch 1 into a reshape ends with one line."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from pipeline.config import load_config
from pipeline.errors import EXIT_USAGE
from tests.support import REPO, Run, run_cli, write_config

pytestmark = pytest.mark.slow

SHAPES = [{}, {"batch": 3}, {"batch": 2, "height": 24, "width": 40}]
BACKENDS = {"onnxruntime", "tf_saved_model", "keras", "tflite_fp32", "tflite_fp16"}


@pytest.fixture(scope="session")
def fcn_run(tmp_path_factory, no_network) -> Run:
    root = tmp_path_factory.mktemp("fcn_dynamic")
    return Run(run_cli("convert", str(REPO / "configs/dynamic/fcn_dynamic.yaml"), "--out", str(root)), root)


def test_every_backend_passes_at_every_shape(fcn_run):
    assert fcn_run.exit_code == 0
    report = fcn_run.report
    assert report["verdict"] == "pass"
    ran = {(c["candidate"], json.dumps(c["shape"], sort_keys=True)) for c in report["comparisons"]}
    assert ran == {(b, json.dumps(s, sort_keys=True)) for b in BACKENDS for s in SHAPES}
    assert all(c["verdict"] == "pass" and c["rule"] in ("noise floor", "fp16 storage floor") for c in report["comparisons"])
    md = (fcn_run.root / "report.md").read_text()
    assert "TFLite fp32 @ batch 2, height 24, width 40" in md and "Keras @ example" in md


def test_the_saved_model_and_keras_file_take_new_shapes(fcn_run):
    import tensorflow as tf

    signature = tf.saved_model.load(str(fcn_run.root / "saved_model")).signatures["serving_default"]
    (spec,) = signature.structured_input_signature[1].values()
    assert spec.shape.as_list() == [None, None, None, 3]
    (out,) = signature(tf.constant(np.zeros((2, 20, 28, 3), np.float32))).values()
    assert out.shape == (2, 20, 28, 4)
    import tf_keras

    keras = tf_keras.models.load_model(str(fcn_run.root / "model.keras"), compile=False)
    assert keras.inputs[0].shape.as_list() == [None, None, None, 3]
    assert keras(np.zeros((3, 12, 16, 3), np.float32)).shape == (3, 12, 16, 4)


@pytest.mark.parametrize("name", ["model_float32.tflite", "model_float16.tflite"])
def test_each_tflite_file_resizes_on_the_standard_interpreter_and_the_signature_runner(fcn_run, name):
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_path=str(fcn_run.root / name))
    (detail,) = interpreter.get_input_details()
    assert list(detail["shape_signature"]) == [-1, -1, -1, 3]
    interpreter.resize_tensor_input(detail["index"], [3, 20, 28, 3])
    interpreter.allocate_tensors()
    interpreter.set_tensor(detail["index"], np.ones((3, 20, 28, 3), np.float32))
    interpreter.invoke()
    assert interpreter.get_tensor(interpreter.get_output_details()[0]["index"]).shape == (3, 20, 28, 4)
    runner = Interpreter(model_path=str(fcn_run.root / name)).get_signature_runner()
    assert runner(x=np.ones((2, 12, 16, 3), np.float32))["output"].shape == (2, 12, 16, 4)


def test_a_backend_right_at_the_example_and_wrong_at_another_shape_fails_naming_it(fcn_run, tmp_path, monkeypatch):
    import shutil

    from pipeline.artifacts.folder import ArtifactDir
    from pipeline.audit import stage as audit
    from pipeline.runners.tensorflow import TFLiteRunner

    root = tmp_path / "copy"
    shutil.copytree(fcn_run.root, root)
    real = TFLiteRunner._infer_impl

    def wrong_at_batch_three(self, feed):  # a conversion that only holds at the traced batch
        outputs = real(self, feed)
        return {k: v + 0.01 for k, v in outputs.items()} if feed["x"].shape[0] == 3 and self.name == "tflite_fp32" else outputs

    monkeypatch.setattr(TFLiteRunner, "_infer_impl", wrong_at_batch_three)
    record = audit.run(load_config(REPO / "configs/dynamic/fcn_dynamic.yaml"), ArtifactDir(root))
    assert record.verdict == "fail"
    failed = [c for c in record.comparisons if c.verdict == "fail"]
    assert [(c.candidate, c.shape) for c in failed] == [("tflite_fp32", {"batch": 3})]
    assert failed[0].reason.startswith("at batch 3, height 32, width 32: ")
    assert record.layers["ran"] and record.layers["shape"] == {"batch": 3}  # localized at the shape that failed


def test_a_model_that_bakes_batch_one_into_a_reshape_ends_with_one_line(tmp_path, capsys, no_network):
    config = write_config(tmp_path / "bad.yaml", "pipeline.zoo.fcn:build_batch_one",
                          [{"name": "x", "shape": [1, 3, 8, 8], "dynamic": {0: "batch"}}])
    out = tmp_path / "art"
    assert run_cli("convert", str(config), "--out", str(out)) == EXIT_USAGE
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: input 'x' axis 0 ('batch') cannot be dynamic: torch.export says: ")
    assert "at fcn.py:" in err[0] and "reshape(1, 4 * 8 * 8)" in err[0]
    assert not out.exists()


def test_the_manifest_and_card_record_the_dynamic_dims_and_verify_reruns_every_shape(fcn_run, capsys):
    manifest = json.loads((fcn_run.root / "manifest.json").read_text())
    dynamic = manifest["dynamic"]
    assert dynamic["inputs"] == {"x": {"0": "batch", "2": "height", "3": "width"}}
    assert dynamic["dims"]["height"] == {"min": 8, "max": 512, "multiple_of": 4, "example": 32}
    assert dynamic["audited_shapes"] == [{"batch": 1, "height": 32, "width": 32}, {"batch": 3, "height": 32, "width": 32},
                                         {"batch": 2, "height": 24, "width": 40}]
    card = (fcn_run.root / "MODEL_CARD.md").read_text()
    assert "## Dynamic dimensions" in card and "| height | `x` (2) | 8 | 512 | 4 | 32 |" in card
    assert (fcn_run.root / "outputs" / "tflite_fp32@batch2_height24_width40.npz").is_file()
    capsys.readouterr()
    assert run_cli("verify", str(fcn_run.root)) == 0
    out = capsys.readouterr().out
    assert "PASS    tflite_fp32 (model_float32.tflite): 'output' max_abs" in out
    assert "'output at batch 2, height 24, width 40' max_abs" in out


def test_audit_samples_redraws_every_shapes_inputs(fcn_run, tmp_path):
    import shutil

    from pipeline.artifacts.folder import ArtifactDir
    from pipeline.audit import stage as audit
    from pipeline.inputs import load_npz

    root = tmp_path / "copy"
    shutil.copytree(fcn_run.root, root)
    record = audit.run(load_config(REPO / "configs/dynamic/fcn_dynamic.yaml"), ArtifactDir(root), samples=2)
    assert record.verdict == "pass"
    assert load_npz(root / "inputs.npz")["x"].shape[0] == load_npz(root / "inputs_batch3.npz")["x"].shape[0] == 2 + 3


def test_an_onnx_files_free_batch_is_audited_at_three_sizes_on_the_onnx_route(tmp_path, no_network):
    """The ONNX route: no config, a Conv over x[N, 3, 8, 8]; ONNX Runtime and the float64 graph are the reference
    and the oracle at each size, and every TF file keeps N free."""
    from onnx import TensorProto, helper, numpy_helper
    import onnx

    weight = numpy_helper.from_array(np.random.default_rng(0).standard_normal((4, 3, 3, 3)).astype(np.float32), "w")
    graph = helper.make_graph(
        [helper.make_node("Conv", ["x", "w"], ["c"], pads=[1, 1, 1, 1], name="conv"), helper.make_node("Relu", ["c"], ["y"], name="relu")],
        "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3, 8, 8])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 4, 8, 8])], [weight])
    source = tmp_path / "conv.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(source))
    out = tmp_path / "out"
    assert run_cli("convert", str(source), "--out", str(out)) == 0
    report = json.loads((out / "report.json").read_text())
    shapes = {json.dumps(c["shape"], sort_keys=True) for c in report["comparisons"]}
    assert shapes == {"{}", '{"N": 3}', '{"N": 2}'} and report["verdict"] == "pass"
    assert all(c["verdict"] == "pass" for c in report["comparisons"])
    assert json.loads((out / "audit.json").read_text())["oracle"]["backend"] == "onnxruntime_fp64"
    assert json.loads((out / "manifest.json").read_text())["dynamic"]["inputs"] == {"x": {"0": "N"}}
