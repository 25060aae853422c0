"""onnx2tf 1.x's meshgrid, given a form a .keras file holds: the same grids, and a file that loads."""
from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

from pipeline.converters import ConversionOptions, get_converter
from pipeline.converters.keras_ops import meshgrid


@pytest.mark.parametrize("indexing", ["ij", "xy"])
@pytest.mark.parametrize("lengths", [(3,), (2, 5), (2, 3, 4)])
def test_meshgrid_makes_tf_meshgrids_grids(indexing, lengths):
    import tensorflow as tf

    tensors = [tf.range(10 * i, 10 * i + n) for i, n in enumerate(lengths)]
    expected = tf.meshgrid(*tensors, indexing=indexing)
    made = meshgrid(*tensors, indexing=indexing)
    assert len(made) == len(expected)
    for grid, want in zip(made, expected):
        assert grid.dtype == want.dtype
        np.testing.assert_array_equal(grid.numpy(), want.numpy())


def test_meshgrid_refuses_an_unknown_indexing():
    import tensorflow as tf

    with pytest.raises(ValueError, match="indexing must be 'xy' or 'ij'"):
        meshgrid(tf.range(2), indexing="yx")


@pytest.mark.slow
def test_a_gather_elements_models_keras_file_loads_and_agrees_with_onnx_runtime(tmp_path, no_network):
    """onnx2tf builds GatherElements with tf.meshgrid; tf_keras's file kept one of its two tensors and
    failed to load ("list index out of range") before the patch."""
    import onnxruntime as ort
    import tf_keras

    graph = helper.make_graph(
        [helper.make_node("GatherElements", ["x", "i"], ["y"], name="gather_0", axis=1)], "gather",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [3, 4]), helper.make_tensor_value_info("i", TensorProto.INT64, [3, 5])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [3, 5])],
    )
    source = tmp_path / "gather.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(source))
    out = tmp_path / "out"
    out.mkdir()
    result = get_converter().convert(source, out, out / "convert.log", ConversionOptions(outputs=("tf_saved_model", "keras")))
    x = np.random.default_rng(2).standard_normal((3, 4)).astype(np.float32)
    indices = np.random.default_rng(1).integers(0, 4, size=(3, 5)).astype(np.int64)
    expected = ort.InferenceSession(str(source), providers=["CPUExecutionProvider"]).run(None, {"x": x, "i": indices})[0]
    model = tf_keras.models.load_model(str(result.keras), safe_mode=True, compile=False)
    feed = {t.name.split(":")[0]: v for t, v in zip(result.inputs, (x, indices))}
    np.testing.assert_array_equal(np.asarray(model([feed[i.name] for i in model.inputs])), expected)


def test_an_int64_constant_first_operand_comes_back_from_the_keras_file_as_int64(tmp_path):
    """tf_keras writes a constant first argument as a list, and its load makes int32 numbers of it."""
    import tensorflow as tf
    import tf_keras

    from pipeline.converters.keras_ops import keras_savable_ops

    x = tf_keras.Input(shape=(3,), dtype=tf.int64, batch_size=1)
    constant = np.array([[5, 6, -7]], dtype=np.int64)
    with keras_savable_ops():
        model = tf_keras.Model(x, [tf.math.multiply(constant, x), tf.math.add(x=constant, y=x), constant + x,
                                   tf.math.subtract(constant, x)])
    path = tmp_path / "m.keras"
    model.save(str(path))
    loaded = tf_keras.models.load_model(str(path), safe_mode=True, compile=False)
    feed = np.array([[1, 2, 3]], dtype=np.int64)
    for got, want in zip(loaded(feed), model(feed)):
        assert got.dtype == tf.int64
        np.testing.assert_array_equal(got.numpy(), want.numpy())


def test_a_gather_from_an_int64_constant_comes_back_from_the_keras_file_as_int64(tmp_path):
    import tensorflow as tf
    import tf_keras

    from pipeline.converters.keras_ops import keras_savable_ops

    indices = tf_keras.Input(shape=(2,), dtype=tf.int32, batch_size=1)
    table = np.array([[3], [-4], [5]], dtype=np.int64)
    with keras_savable_ops():
        gathered = tf.gather_nd(table, tf.reshape(indices, [2, 1]))
        model = tf_keras.Model(indices, [gathered, tf.gather(params=table, indices=indices)])
    path = tmp_path / "m.keras"
    model.save(str(path))
    loaded = tf_keras.models.load_model(str(path), safe_mode=True, compile=False)
    feed = np.array([[2, 1]], dtype=np.int32)
    for got, want in zip(loaded(feed), model(feed)):
        assert got.dtype == tf.int64
        np.testing.assert_array_equal(got.numpy(), want.numpy())
    np.testing.assert_array_equal(loaded(feed)[0].numpy(), [[5], [-4]])


def test_an_unsigned_subtraction_is_left_as_it_is():
    """TF's Neg has no unsigned kernel: (-t) + c would fail to build where c - t builds."""
    import tensorflow as tf
    import tf_keras

    from pipeline.converters.keras_ops import keras_savable_ops

    x = tf_keras.Input(shape=(3,), dtype=tf.uint8, batch_size=1)
    with keras_savable_ops():
        model = tf_keras.Model(x, tf.math.subtract(np.array([[255, 200, 9]], np.uint8), x))
    np.testing.assert_array_equal(model(np.array([[1, 2, 3]], np.uint8)).numpy(), [[254, 198, 6]])
