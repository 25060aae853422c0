"""The faster .keras load gives the very model of the plain load: the same outputs, bit for bit."""
from __future__ import annotations

import contextlib

import numpy as np
import pytest

tf = pytest.importorskip("tensorflow")
tf_keras = pytest.importorskip("tf_keras")

from pipeline import keras_io  # noqa: E402
from pipeline.patching import replaced  # noqa: E402


@pytest.fixture(scope="module")
def op_model(tmp_path_factory):
    """A tf_keras model built the way onnx2tf builds them: TF ops called on constant arrays."""
    rng = np.random.default_rng(0)
    table = rng.standard_normal((64, 32)).astype(np.float32)  # 2,048 numbers: a large first argument
    weight = rng.standard_normal((32, 48)).astype(np.float32)  # 1,536 numbers: a large keyword argument
    bias = rng.standard_normal(48).astype(np.float32)  # 48 numbers: a small keyword argument
    ids = tf_keras.Input(shape=(5,), batch_size=1, dtype="int32")
    x = tf.gather(table, ids)  # params: a constant first argument
    x = tf.linalg.matmul(x, b=weight)
    x = tf.math.add(x, bias)
    scale = tf.math.multiply(np.arange(48, dtype=np.float32), x[:, :, :1])  # a small constant first argument
    joined = tf.concat([x, scale], axis=-1)  # a list first argument: never one array
    model = tf_keras.Model(ids, joined)
    path = tmp_path_factory.mktemp("keras_io") / "model.keras"
    model.save(str(path))
    return path


def _load(path, fast: bool):
    if fast:
        with keras_io.fast_load():
            return tf_keras.models.load_model(str(path), safe_mode=True, compile=False)
    return tf_keras.models.load_model(str(path), safe_mode=True, compile=False)


def _traced_ops(model, ids) -> int:
    function = tf.function(lambda x: model(x, training=False))
    return len(function.get_concrete_function(tf.TensorSpec(ids.shape, tf.int32)).graph.get_operations())


def test_the_fast_load_gives_the_same_outputs_bit_for_bit(op_model):
    ids = np.array([[3, 0, 63, 7, 7]], dtype=np.int32)
    plain, fast = _load(op_model, fast=False), _load(op_model, fast=True)
    np.testing.assert_array_equal(plain(ids).numpy(), fast(ids).numpy())
    traced = [tf.function(lambda x, m=m: m(x, training=False))(ids).numpy() for m in (plain, fast)]
    np.testing.assert_array_equal(traced[0], traced[1])
    np.testing.assert_array_equal(traced[1], fast(ids).numpy())


def test_the_fast_load_keeps_each_constant_as_one_tensor(op_model):
    ids = np.array([[1, 2, 3, 4, 5]], dtype=np.int32)
    plain, fast = _load(op_model, fast=False), _load(op_model, fast=True)
    plain_ops, fast_ops = _traced_ops(plain, ids), _traced_ops(fast, ids)
    assert plain_ops > 2048, "the plain load has a constant per number of the table"
    assert fast_ops < 200, f"the fast load traces {fast_ops} ops"
    gather = next(layer for layer in fast.layers if "gather" in layer.name)
    assert tf.is_tensor(gather.inbound_nodes[0].call_args[0])
    assert gather.inbound_nodes[0].call_args[0].shape == (64, 32)


def test_the_patches_are_undone_after_the_load(op_model):
    from tf_keras.src.engine import base_layer, functional
    from tf_keras.src.saving import saving_lib

    before = (functional.reconstruct_from_config, base_layer.Layer._functional_construction_call, saving_lib.ATTR_SKIPLIST,
              saving_lib.json, functional.connect_ancillary_layers)
    read = []
    with replaced(keras_io, "_loads", lambda text: read.append(text) or __import__("json").loads(text)):
        _load(op_model, fast=True)
    assert read, "the config was read by the fast JSON reader"
    assert (functional.reconstruct_from_config, base_layer.Layer._functional_construction_call, saving_lib.ATTR_SKIPLIST,
            saving_lib.json, functional.connect_ancillary_layers) == before


def test_layers_not_connected_to_the_outputs_are_found_as_tf_keras_finds_them(tmp_path):
    """A layer only add_loss reaches is not on the way to the outputs: tf_keras's own search adds it on
    load; where every layer is on that way, the one-walk search adds nothing either."""
    x = tf_keras.Input(shape=(4,), batch_size=1)
    hidden = tf_keras.layers.Dense(3, name="hidden")(x)
    aside = tf_keras.layers.Dense(2, name="aside")(x)  # reaches only the loss
    with_loss = tf_keras.Model(x, hidden)
    with_loss.add_loss(tf.reduce_mean(aside))
    without = tf_keras.Model(x, hidden)
    from tf_keras.src.engine import functional

    for name, model in (("with_loss", with_loss), ("without", without)):
        path = tmp_path / f"{name}.keras"
        model.save(str(path))
        plain = _load(path, fast=False)
        real, calls = functional.connect_ancillary_layers, []
        with replaced(functional, "connect_ancillary_layers", lambda *args: calls.append(1) or real(*args)):
            fast = _load(path, fast=True)
        assert len(calls) == (1 if name == "with_loss" else 0)  # tf_keras's own search only where it finds some
        assert [layer.name for layer in fast.layers] == [layer.name for layer in plain.layers]
        assert ("aside" in [layer.name for layer in fast.layers]) == (name == "with_loss")
        assert len(fast.losses) == len(plain.losses) == (1 if name == "with_loss" else 0)


@pytest.mark.parametrize("value, dtype", [
    ([[1.5, 2.0], [3.0, -4.25]], tf.float32),
    ([[1, 2], [3, 4]], tf.int32),
    ([True, False, True], tf.bool),
])
def test_a_rectangular_list_of_one_kind_of_number_becomes_one_tensor(value, dtype):
    dense = keras_io._dense_constant(value)
    assert dense is not None and dense.dtype == dtype
    one_by_one = tf.stack([tf.convert_to_tensor(v) for v in tf.nest.flatten(value)])
    np.testing.assert_array_equal(tf.reshape(one_by_one, dense.shape).numpy(), dense.numpy())


@pytest.mark.parametrize("value", [
    [[1.0, 2.0], [3.0]],  # ragged
    [1, 2.5],  # ints and floats: one by one they become int32 and float32 tensors
    [1, 2**40],  # a large integer becomes an int64 tensor on its own
    ["a", "b"],
    [1.0],  # a single number
    3.0,
])
def test_anything_else_is_left_as_it_is(value):
    assert keras_io._dense_constant(value) is None


def test_only_large_lists_of_plain_numbers_are_kept_whole():
    assert keras_io._number_kinds([[0.5] * 32] * 32) == {float}
    assert keras_io._number_kinds([[0.5] * 32] * 31 + [[1] * 31 + [True]]) == {float, int, bool}
    assert keras_io._number_kinds([0.5] * 10) is None
    assert keras_io._number_kinds([[0.5] * 32] * 31 + [["a"] * 32]) is None
    assert keras_io._number_kinds([[0.5] * 32] * 31 + [[None] * 32]) is None
    assert keras_io._number_kinds([[0.5] * 32] * 31 + [[0.5] * 31]) is None  # ragged
    assert keras_io._number_kinds([[0.5] * 32] * 31 + [[[0.5]] * 32]) is None  # nested deeper in one place
    assert keras_io._number_kinds({"value": [0.5] * 2048}) is None


@pytest.mark.parametrize("dtype", [None, "float32", "float64", "float16"])
@pytest.mark.parametrize("floats", [True, False])
def test_a_kept_constant_becomes_the_tensor_its_list_becomes(dtype, floats):
    rng = np.random.default_rng(0)
    numbers = list(rng.standard_normal(2045) * 10.0 ** rng.integers(-45, 39, 2045)) + [0.1, 1 / 3, -0.0, 1e-40, 3.4e38]
    value = np.array(numbers).reshape(41, 50).tolist()  # Python floats, some round (or underflow) to float32
    keras_io._register_conversion()
    kept = tf.convert_to_tensor(keras_io.Constant(value, floats=floats), dtype=dtype)
    plain = tf.convert_to_tensor(value, dtype=dtype)
    assert kept.dtype == plain.dtype
    assert kept.numpy().tobytes() == plain.numpy().tobytes()


def test_the_keras_runner_falls_back_to_the_plain_load(op_model, monkeypatch, capsys):
    from contextlib import contextmanager

    from pipeline.runners import tensorflow as tf_runners

    @contextmanager
    def broken():
        raise RuntimeError("a tf_keras this module does not know")
        yield

    monkeypatch.setattr(tf_runners, "fast_load", broken)
    model = tf_runners._load_keras(op_model)
    ids = np.array([[3, 0, 63, 7, 7]], dtype=np.int32)
    np.testing.assert_array_equal(model(ids).numpy(), _load(op_model, fast=False)(ids).numpy())
    assert "the fast Keras load failed (RuntimeError: a tf_keras this module does not know); loading it plainly" in capsys.readouterr().err


def test_the_fast_save_writes_the_same_file(op_model, tmp_path):
    import zipfile

    model = _load(op_model, fast=False)
    model.save(str(tmp_path / "plain.keras"))
    from tf_keras.src.engine import node

    before = node.json
    with keras_io.fast_save():
        model.save(str(tmp_path / "fast.keras"))
    assert node.json is before, "the trial encoding is back after the save"
    plain, fast = zipfile.ZipFile(tmp_path / "plain.keras"), zipfile.ZipFile(tmp_path / "fast.keras")
    assert plain.read("config.json") == fast.read("config.json")
    ids = np.array([[3, 0, 63, 7, 7]], dtype=np.int32)
    np.testing.assert_array_equal(_load(tmp_path / "fast.keras", fast=False)(ids).numpy(), model(ids).numpy())


def test_large_constants_pass_the_save_as_leaves_and_are_written_number_for_number(tmp_path):
    """While a model is saved, its large constants (a numpy array, a constant tensor) are one leaf each for
    tf_keras's walks; the config written is the plain save's, number for number (json reads the same
    value from both texts), and the model's call arguments are its own again afterwards."""
    import json
    import zipfile

    rng = np.random.default_rng(1)
    weight = rng.standard_normal((8, 200)).astype(np.float32)
    table = rng.standard_normal((16, 80)).astype(np.float32)
    inputs = tf_keras.Input(shape=(8,), batch_size=1, name="x")
    x = tf.linalg.matmul(inputs, b=tf.constant(weight))  # a constant tensor as a keyword argument
    x = tf.math.add(x[:, :80], tf.reduce_sum(table, axis=0))  # a small constant: left as it is
    ids = tf_keras.Input(shape=(3,), batch_size=1, dtype="int32", name="ids")
    rows = tf.gather(table, ids)  # a numpy array as the first argument
    model = tf_keras.Model([inputs, ids], [x, rows])
    before = [(node.call_args, node.call_kwargs) for layer in model.layers for node in layer._inbound_nodes]  # noqa: SLF001
    model.save(str(tmp_path / "plain.keras"))
    seen = []
    original = keras_io._leaves_in_calls  # noqa: SLF001

    @contextlib.contextmanager
    def spy(model):
        with original(model):
            seen.extend(v for layer in model.layers for node in layer._inbound_nodes  # noqa: SLF001
                        for v in tf.nest.flatten((node.call_args, node.call_kwargs)) if isinstance(v, keras_io.Leaf))
            yield

    with replaced(keras_io, "_leaves_in_calls", spy), keras_io.fast_save():
        model.save(str(tmp_path / "fast.keras"))
    assert len(seen) == 2, "the table and the weight, not the small constant"
    after = [(node.call_args, node.call_kwargs) for layer in model.layers for node in layer._inbound_nodes]  # noqa: SLF001
    assert all(a[0] is b[0] and a[1] is b[1] for a, b in zip(before, after))
    plain, fast = (zipfile.ZipFile(tmp_path / name).read("config.json") for name in ("plain.keras", "fast.keras"))
    assert json.loads(fast) == json.loads(plain) and len(json.loads(fast)["config"]["layers"]) == len(model.layers)
    assert keras_io._loads(fast) == json.loads(plain)  # noqa: SLF001
    loaded = tf_keras.models.load_model(str(tmp_path / "fast.keras"), safe_mode=True, compile=False)  # tf_keras alone
    feed = [rng.standard_normal((1, 8)).astype(np.float32), np.array([[0, 15, 3]], dtype=np.int32)]
    for got, want in zip(loaded(feed), model(feed)):
        np.testing.assert_array_equal(got.numpy(), want.numpy())


# Fast JSON: the config's numbers are the ones json writes and reads, whoever writes or reads them.
_TRICKY = [0.1, 1e-05, 1.2345678901234567e-07, 0.00012345678901234567, 3.4028234663852886e38, -0.0, 5e-324, 1e16, 123.0]


@pytest.mark.parametrize("array", [
    np.array(_TRICKY * 120, dtype=np.float64),
    np.random.default_rng(2).standard_normal((4, 8, 40)).astype(np.float32).transpose(2, 0, 1),  # not contiguous
    np.random.default_rng(3).standard_normal(1100).astype(np.float16),
    np.array([np.iinfo(np.int64).min, np.iinfo(np.int64).max, 0, -7] * 300, dtype=np.int64),
    np.array([np.iinfo(np.uint64).max, 1] * 600, dtype=np.uint64),
    np.arange(1200, dtype=np.int32).reshape(30, 40),
    np.array([True, False] * 600),
], ids=["float64", "float32-transposed", "float16", "int64", "uint64", "int32", "bool"])
def test_an_array_is_written_as_the_numbers_of_its_tolist(array):
    import json

    text = keras_io._array_json(array)  # noqa: SLF001
    read = json.loads(text)
    assert read == array.tolist() and json.dumps(read) == json.dumps(array.tolist())  # the same type and value


@pytest.mark.parametrize("array", [
    np.arange(1200, dtype=">i4"),  # big-endian: orjson refuses it
    np.arange(1200, dtype=">f8") / 3,
    np.array(2.5),  # 0-d: tolist() is a number, not a list
])
def test_an_array_orjson_does_not_take_as_it_is_is_written_as_its_tolist(array):
    import json

    assert json.dumps(json.loads(keras_io._array_json(array))) == json.dumps(array.tolist())  # noqa: SLF001


def test_an_array_with_nan_or_infinity_is_written_by_json():
    import json

    array = np.array([np.nan, np.inf, -np.inf, 1.5] * 300, dtype=np.float32)
    text = keras_io._array_json(array)  # noqa: SLF001
    assert text == json.dumps(array.tolist()) and "NaN" in text and "-Infinity" in text


def test_the_config_keeps_its_leaves_in_place_and_the_mark_text_falls_back_to_json():
    import json

    table = np.random.default_rng(4).standard_normal((40, 30)).astype(np.float32)
    config = {"a": [1, keras_io.Leaf(table)], "b": {"c": keras_io.Leaf(np.arange(2000))}, "d": "x"}
    plain = {"a": [1, table.tolist()], "b": {"c": list(range(2000))}, "d": "x"}
    assert json.dumps(json.loads(keras_io._dumps(config))) == json.dumps(plain)  # noqa: SLF001
    config["d"] = plain["d"] = keras_io._MARK  # noqa: SLF001 - a config that holds the mark's own text
    assert json.dumps(json.loads(keras_io._dumps(config))) == json.dumps(plain)  # noqa: SLF001


@pytest.mark.parametrize("text", [
    '{"a": [0.1, 1e-05, -3, 9223372036854775807, -9223372036854775808], "b": "12345678901234567890"}',
    '[NaN, Infinity, -Infinity, 1.5]',  # orjson refuses these: json reads them
    '[1e400, 2]',  # beyond float64
    '[1, 123456789012345678901234567890, -12345678901234567890]',  # orjson would read these as floats
    '[1, -9999999999999999999, 2]',  # below int64: a float to orjson, though it has 19 digits
    '[\n123456789012345678901234567890]',  # after a newline
    '{"a":\t[12345678901234567890123]}',  # after a tab
    '123456789012345678901234567890',  # the whole text
    '-12345678901234567890',
    '[1, 18446744073709551615, 9999999999999999999, -9223372036854775808]',  # uint64 and int64: orjson reads them
])
def test_the_config_is_read_as_json_reads_it(text):
    import json

    fast, plain = keras_io._loads(text.encode()), json.loads(text)  # noqa: SLF001
    assert json.dumps(fast) == json.dumps(plain)  # NaN != NaN: compare the texts, which keep types too


def test_without_orjson_json_writes_and_reads(monkeypatch):
    import json

    from tf_keras.src.saving import saving_lib

    monkeypatch.setattr(keras_io, "optional_module", lambda name: None if name == "orjson" else __import__(name, fromlist=["_"]))
    array = np.arange(1500, dtype=np.float32) / 7
    assert keras_io._array_json(array) == json.dumps(array.tolist())  # noqa: SLF001
    with keras_io.fast_json_load():
        assert saving_lib.json is json


def test_a_plain_config_is_read_by_orjson(monkeypatch):
    import json

    def refused(*args, **kwargs):
        raise AssertionError("json read a config orjson reads the same")

    monkeypatch.setattr(keras_io, "json", type("NoJson", (), {"loads": staticmethod(refused)}))
    text = ('{"layers": [[0.1, -2.5e-07, 3, -0.0], [1e+16, 0.00012345678901234567, 9223372036854775807],\n'
            '\t[-9223372036854775808, 18446744073709551615, 1.0]]}')  # int64's smallest: a reversed slice's end
    assert json.dumps(keras_io._loads(text.encode())) == json.dumps(json.loads(text))  # noqa: SLF001
