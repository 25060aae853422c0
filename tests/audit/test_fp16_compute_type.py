"""pipeline/audit/stage.py `_fp16_compute_type`, `_made_apart`: when an fp16 TFLite file has no storage reference:
it computes in float16 (read from its float inputs and outputs, token-id models included), or it was made by
another route than the fp32 file."""
from __future__ import annotations

from pathlib import Path

import pytest

from pipeline.audit.stage import _fp16_compute_type


def token_model(path: Path, out_dtype: str) -> Path:
    """A TFLite file that takes int32 token ids and gives `out_dtype` (as onnx2tf 2.x's fp16 file of a text model)."""
    import tensorflow as tf

    dtype = getattr(tf, out_dtype)

    @tf.function(input_signature=[tf.TensorSpec([1, 4], tf.int32)])
    def ids(x):
        return tf.cast(x, dtype)

    path.write_bytes(tf.lite.TFLiteConverter.from_concrete_functions([ids.get_concrete_function()], ids).convert())
    return path


@pytest.mark.parametrize("out_dtype", ["float16", "float32"])
def test_a_model_with_integer_inputs_shows_its_compute_type_at_its_outputs(tmp_path, out_dtype):
    assert _fp16_compute_type(token_model(tmp_path / "ids.tflite", out_dtype)) == out_dtype


def test_an_unreadable_file_says_so(tmp_path):
    (tmp_path / "broken.tflite").write_bytes(b"not a flatbuffer")
    assert _fp16_compute_type(tmp_path / "broken.tflite").startswith("an unreadable type")


def test_an_fp16_file_made_apart_from_the_fp32_file_gets_no_storage_reference():
    from types import SimpleNamespace

    from pipeline.audit.stage import _made_apart

    same = "onnx2tf 1.29.24 (TF graph, TFLiteConverter on its SavedModel)"
    assert _made_apart(SimpleNamespace(made_by={"tflite_fp32": same, "tflite_fp16": same})) is None
    apart = SimpleNamespace(made_by={"tflite_fp32": "onnx2tf 2.6.9 (flatbuffer_direct)",
                                     "tflite_fp16": "onnx2tf 2.6.9 (its SavedModel, float16 weights by TensorFlow's TFLite converter)"})
    assert "their foldings differ" in _made_apart(apart)
