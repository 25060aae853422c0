"""The adapter's int8 bits: onnx2tf's calibration files and options, and what it says without calibration."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from pipeline.converters.base import ConversionOptions, Int8Request
from pipeline.converters.onnx2tf_v1 import _calibration_files, _int8_arguments, _int8_notes, _tf_input_name


def _calibration(tmp_path: Path) -> Path:
    path = tmp_path / "calibration.npz"
    x = np.arange(2 * 1 * 3 * 4 * 5, dtype=np.float32).reshape(2, 1, 3, 4, 5)
    np.savez(path, x=x, v=np.ones((2, 1, 7), np.float32), **{"/in:0": np.ones((2, 1, 3), np.float32)})
    return path


def test_calibration_files_are_channel_last_with_samples_first(tmp_path):
    entries = _calibration_files(tmp_path, _calibration(tmp_path), keep_nchw=())
    by_name = {e[0]: e for e in entries}
    x = np.load(by_name["x"][1])
    assert x.shape == (2, 4, 5, 3)  # (samples, H, W, C)
    assert x[1, 2, 3, 1] == np.arange(120, dtype=np.float32).reshape(2, 3, 4, 5)[1, 1, 2, 3]
    assert np.load(by_name["v"][1]).shape == (2, 7)
    assert by_name["x"][2:] == [0.0, 1.0]  # already preprocessed: mean 0, std 1


def test_kept_channel_first_inputs_are_not_transposed(tmp_path):
    entries = _calibration_files(tmp_path, _calibration(tmp_path), keep_nchw=("x",))
    assert np.load(next(e[1] for e in entries if e[0] == "x")).shape == (2, 3, 4, 5)


def test_tf_input_names_follow_onnx2tf_renaming():
    assert _tf_input_name("/in:0") == "wa/in__0"
    assert _tf_input_name("x") == "x"


def test_full_integer_passes_calibration_for_every_input(tmp_path):
    request = Int8Request(_calibration(tmp_path), "full_integer", integer_io=True, samples=2)
    arguments = _int8_arguments(tmp_path, ConversionOptions(int8=request))
    assert arguments["output_integer_quantized_tflite"] is True
    assert arguments["input_quant_dtype"] == arguments["output_quant_dtype"] == "int8"
    assert sorted(e[0] for e in arguments["custom_input_op_name_np_data_path"]) == ["v", "wa/in__0", "x"]


def test_dynamic_range_and_no_request():
    assert _int8_arguments(Path("."), ConversionOptions(int8=Int8Request(None, "dynamic_range"))) == {
        "output_dynamic_range_quantized_tflite": True}
    assert _int8_arguments(Path("."), ConversionOptions()) == {}


def test_without_calibration_the_notes_say_no_int8_was_made():
    assert _int8_notes(None, {}) == ["no int8 TFLite: no calibration data was given (config key quantize.int8.calibration); "
                                     "nothing is calibrated on random data"]
    request = Int8Request(Path("c.npz"), "full_integer", True, 4, "4 samples from c.npz")
    assert _int8_notes(request, {"int8": Path("m.tflite"), "int8_integer_io": None}) == [
        "int8 (full_integer) calibrated on 4 samples from c.npz", "onnx2tf wrote no int8_integer_io TFLite file (see convert.log)"]


def test_a_layer_of_no_onnx_tensor_is_known_by_the_first_one_it_feeds():
    import tf_keras

    from pipeline.converters.onnx2tf_v1 import _feeding

    x = tf_keras.Input((4,), name="x")
    scaled = tf_keras.layers.Lambda(lambda t: t * 2.0, name="tf.math.multiply_1")(x)
    shifted = tf_keras.layers.Lambda(lambda t: t + 1.0, name="tf.math.add_1")(scaled)
    out = tf_keras.layers.Lambda(lambda t: t * 3.0, name="tf.math.multiply_2")(shifted)
    model = tf_keras.Model(x, out)
    named = {"tf.math.add_1": "bn_out", "tf.math.multiply_2": "scale_out"}
    assert _feeding(model, named) == {"tf.math.multiply_1": "bn_out"}
