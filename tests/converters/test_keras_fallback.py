"""Keras for models whose op layers take a layer's tf.Variable (RegNet, ConvNeXt): Keras cannot
serialise it, so it is frozen as a constant; the file loads in safe mode and computes the same."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from pipeline.converters.base import ConversionResult
from pipeline.converters.onnx2tf_v1 import _keras_with_frozen_variables

pytestmark = pytest.mark.slow  # builds and saves TF models


def _model_using_a_variable():
    import tensorflow as tf
    import tf_keras

    inputs = tf_keras.Input((6, 6, 4), batch_size=1)
    conv = tf_keras.layers.Conv2D(4, 3, padding="same", use_bias=False, kernel_initializer="glorot_uniform")
    conv.build((1, 6, 6, 4))
    outputs = tf.nn.convolution(inputs, conv.kernel, padding="SAME")  # an op layer with a tf.Variable argument
    return tf_keras.Model(inputs, outputs)


def _result() -> ConversionResult:
    return ConversionResult(saved_model=Path("sm"), keras=None, tflite={}, inputs=[], outputs=[], converter="onnx2tf",
                            version="1", notes=["onnx2tf wrote no Keras file for this model (see convert.log); Keras is not audited"])


def test_a_variable_argument_breaks_the_plain_save(tmp_path):
    with pytest.raises(ValueError, match="VariableSpec"):
        _model_using_a_variable().save(str(tmp_path / "plain.keras"), save_format="keras_v3")


def test_frozen_variables_give_a_keras_file_that_loads_in_safe_mode_and_agrees(tmp_path):
    import tf_keras

    model = _model_using_a_variable()
    x = np.random.default_rng(0).standard_normal((1, 6, 6, 4)).astype(np.float32)
    expected = model(x).numpy()
    result = _keras_with_frozen_variables(_result(), model, tmp_path)
    assert result.keras == tmp_path / "model.keras"
    assert result.notes == [result.notes[0]] and result.notes[0].startswith(
        "model.keras: onnx2tf's own Keras save fails (a VariableSpec is not serialisable); saved instead with 1 variable")
    loaded = tf_keras.models.load_model(str(result.keras), safe_mode=True, compile=False)
    np.testing.assert_array_equal(loaded(x).numpy(), expected)


def test_regnet_from_the_zoo_gets_a_keras_file_that_passes(tmp_path, no_network):
    from tests.support import run_cli

    assert run_cli("convert", "zoo/regnet_y_400mf", "--out", str(tmp_path)) == 0
    convert = json.loads((tmp_path / "convert.json").read_text())
    assert convert["models"]["keras"] == "model.keras"
    report = json.loads((tmp_path / "report.json").read_text())
    keras = next(c for c in report["comparisons"] if c["candidate"] == "keras")
    assert keras["verdict"] == "pass"
    assert keras["max_abs"] == pytest.approx(0.0, abs=1e-5)  # measured 3.3e-7
    assert any(n.startswith("model.keras: onnx2tf's own Keras save fails") for n in report["notes"])
