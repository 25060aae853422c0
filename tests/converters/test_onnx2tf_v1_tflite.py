"""onnx2tf 1.x's TFLite files are converted from the SavedModel it wrote, not from its Keras model."""
from __future__ import annotations

import numpy as np
import pytest

from pipeline.converters import ConversionOptions, get_converter
from pipeline.converters.onnx2tf_v1_tflite import FROM_KERAS_MODEL, FROM_SAVED_MODEL, _SkippingConverter
from tests.converters.test_onnx2tf_v1 import _conv_relu


class _TargetSpec:
    def __init__(self) -> None:
        self.supported_types = []
        self.supported_ops = None


class _FakeConverter:
    def __init__(self, made: bytes | None) -> None:
        self.made = made
        self.target_spec = _TargetSpec()
        self.optimizations = []
        self.unfold_batchmatmul = True

    def convert(self) -> bytes:
        if self.made is None:
            raise ValueError("cannot convert this SavedModel")
        return self.made


def test_a_failing_savedmodel_route_falls_back_to_the_keras_route_set_up_alike(capsys):
    import tensorflow as tf

    keras_route = _FakeConverter(b"from keras")
    routes: dict[str, str] = {}
    converter = _SkippingConverter(_FakeConverter(None), set(), lambda: keras_route, (routes, FROM_SAVED_MODEL))
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.target_spec.supported_types = [tf.float16]
    converter.unfold_batchmatmul = False
    assert converter.convert() == b"from keras"
    assert keras_route.optimizations == [tf.lite.Optimize.DEFAULT]
    assert keras_route.target_spec.supported_types == [tf.float16]
    assert keras_route.unfold_batchmatmul is False
    assert routes == {"fp16": FROM_KERAS_MODEL}
    assert "converting the Keras model instead" in capsys.readouterr().out


def test_a_skipped_precision_is_not_converted():
    import tensorflow as tf

    failing = _SkippingConverter(_FakeConverter(None), {"fp16"}, None)
    failing.target_spec.supported_types = [tf.float16]
    assert failing.convert() == b""
    with pytest.raises(ValueError):  # no fallback: the error is onnx2tf's to see
        _SkippingConverter(_FakeConverter(None), {"fp16"}, None).convert()


@pytest.mark.slow
def test_the_tflite_files_come_from_the_savedmodel_and_compute_what_it_does(tmp_path, no_network, monkeypatch):
    import tensorflow as tf
    from ai_edge_litert.interpreter import Interpreter

    def refused(*args, **kwargs):
        raise AssertionError("the Keras route was taken though the SavedModel was there")

    monkeypatch.setattr(tf.lite.TFLiteConverter, "from_keras_model", refused)
    out = tmp_path / "out"
    out.mkdir()
    result = get_converter().convert(_conv_relu(tmp_path / "tiny.onnx"), out, out / "convert.log", ConversionOptions())
    assert set(result.tflite) == {"fp32", "fp16"}
    assert all(result.made_by[f"tflite_{p}"].endswith("TFLiteConverter on its SavedModel)") for p in result.tflite)
    x = np.random.default_rng(1).standard_normal((1, 8, 8, 3)).astype(np.float32)
    signature = tf.saved_model.load(str(result.saved_model)).signatures["serving_default"]
    (key,) = signature.structured_input_signature[1]
    expected = next(iter(signature(**{key: tf.constant(x)}).values())).numpy()
    for precision, path in result.tflite.items():
        runner = Interpreter(model_path=str(path)).get_signature_runner("serving_default")
        got = next(iter(runner(**{key: x}).values()))
        np.testing.assert_allclose(got, expected, rtol=0, atol=1e-5 if precision == "fp32" else 0.05 * np.abs(expected).max())
