"""Every shipped model's signature carries the config's input and output names, read as a TF Serving or
TFLite client would: outside the pipeline, with plain TensorFlow and LiteRT (slow); and how the onnx2tf 1.x
adapter keys its save's outputs (pipeline/converters/onnx2tf_v1.py)."""
from __future__ import annotations

import json

import numpy as np
import pytest

from pipeline.converters.onnx2tf_v1 import _keyed_by_name
from tests.support import Run, run_cli, write_config

OUTPUTS = ["logits", "features"]


class _Model:
    def __init__(self, *output_names: str) -> None:
        self.output_names = list(output_names)


def test_onnx2tf_s_outputs_are_keyed_by_the_saved_model_s_output_names():
    assert _keyed_by_name(lambda x: [x, -x], [_Model("logits", "features")])(1) == {"logits": 1, "features": -1}
    assert _keyed_by_name(lambda x: x, [_Model("old"), _Model("output")])(1) == {"output": 1}  # the last model built


def test_where_names_cannot_key_them_onnx2tf_s_own_result_stays():
    two = lambda x: [x, -x]  # noqa: E731
    assert _keyed_by_name(two, [])(1) == [1, -1]  # no model seen
    assert _keyed_by_name(two, [_Model("y", "y")])(1) == [1, -1]  # one name for two outputs
    assert _keyed_by_name(two, [_Model("y")])(1) == [1, -1]  # fewer names than outputs


@pytest.fixture(scope="module")
def two_heads_run(tmp_path_factory, no_network) -> Run:
    """A tiny two-output model with named outputs and a dynamic batch, converted once."""
    root = tmp_path_factory.mktemp("two_heads")
    config = write_config(root.parent / "two_heads.yaml", "tests.converters.models:two_heads",
                          [{"name": "x", "shape": [1, 3, 16, 16], "dtype": "float32", "dynamic": {0: "batch"}}],
                          name="two_heads", outputs=OUTPUTS)
    return Run(run_cli("convert", str(config), "--out", str(root)), root)


def _serving_default(root):
    import tensorflow as tf

    return tf.saved_model.load(str(root / "saved_model")).signatures["serving_default"]


@pytest.mark.slow
def test_the_saved_model_signature_takes_and_returns_the_config_names(two_heads_run):
    assert two_heads_run.exit_code == 0
    signature = _serving_default(two_heads_run.root)
    (inputs,) = [signature.structured_input_signature[1]]
    assert list(inputs) == ["x"] and inputs["x"].shape.as_list() == [None, 16, 16, 3]  # onnx2tf's layout, batch dynamic
    assert sorted(signature.structured_outputs) == sorted(OUTPUTS)
    assert signature.structured_outputs["logits"].shape.as_list() == [None, 4]
    assert signature.structured_outputs["features"].shape.as_list() == [None, 16, 16, 8]


@pytest.mark.slow
def test_it_runs_at_a_new_batch_size_and_each_name_holds_its_output(two_heads_run):
    import onnxruntime as ort
    import tensorflow as tf

    x = np.random.default_rng(0).uniform(-1, 1, (3, 3, 16, 16)).astype(np.float32)
    returned = _serving_default(two_heads_run.root)(x=tf.constant(x.transpose(0, 2, 3, 1)))
    session = ort.InferenceSession(str(two_heads_run.root / "model.onnx"), providers=["CPUExecutionProvider"])
    logits, features = session.run(OUTPUTS, {"x": x})
    np.testing.assert_allclose(returned["logits"].numpy(), logits, atol=1e-4)
    np.testing.assert_allclose(returned["features"].numpy(), features.transpose(0, 2, 3, 1), atol=1e-4)


@pytest.mark.slow
def test_the_keras_model_and_the_tflite_files_carry_the_same_names(two_heads_run):
    import tf_keras
    from ai_edge_litert.interpreter import Interpreter

    keras = tf_keras.models.load_model(str(two_heads_run.root / "model.keras"), compile=False)
    assert [t.name.split(":")[0] for t in keras.inputs] == ["x"] and keras.output_names == OUTPUTS
    for name in ("model_float32.tflite", "model_float16.tflite"):
        signature = Interpreter(model_path=str(two_heads_run.root / name)).get_signature_list()["serving_default"]
        assert signature["inputs"] == ["x"] and sorted(signature["outputs"]) == sorted(OUTPUTS), name
    io = json.loads((two_heads_run.root / "convert.json").read_text())["io"]
    assert [(b["name"], b["tf_name"]) for b in io["outputs"]] == [(n, n) for n in OUTPUTS]


@pytest.mark.slow
def test_the_seed_model_returns_output_as_its_config_and_tflite_file_say(seed_run):
    """The issue's case: seed_ym's config names no outputs, so its one output is `output`."""
    signature = _serving_default(seed_run.root)
    assert list(signature.structured_input_signature[1]) == ["x"] and list(signature.structured_outputs) == ["output"]
