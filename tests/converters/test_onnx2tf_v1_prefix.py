"""pipeline/converters/onnx2tf_v1_prefix.py: onnx2tf's dummy inferences compute each layer once per conversion,
with TensorFlow's own numbers, and the conversion is the same file for file."""
from __future__ import annotations

import contextlib

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from pipeline.converters import onnx2tf_v1_prefix as prefix
from tests.converters.onnx2tf_graphs import tflite_graph

pytest.importorskip("onnx2tf")
import tensorflow as tf  # noqa: E402
import tf_keras  # noqa: E402
from onnx2tf.utils import common_functions  # noqa: E402


@pytest.fixture
def graph():
    """A chain like onnx2tf's: TF ops on KerasTensors (TFOpLambda layers), and the prefixes onnx2tf runs."""
    x = tf_keras.Input(shape=(3, 4), batch_size=1, name="x")
    ends, t = [], x
    for step in range(5):
        t = tf.math.tanh(tf.math.multiply(t, 1.5 + step))
        ends.append(t)
    return x, ends


@pytest.fixture
def layer_calls(monkeypatch):
    """How many times each non-model layer is called."""
    from tf_keras.src.engine import base_layer

    counted: list[str] = []
    real = base_layer.Layer.__call__

    def counting(self, *args, **kwargs):
        if not isinstance(self, tf_keras.Model):
            counted.append(self.name)
        return real(self, *args, **kwargs)

    monkeypatch.setattr(base_layer.Layer, "__call__", counting)
    return counted


def _prefix_runs(x, ends, data=None) -> list[np.ndarray]:
    """onnx2tf's pattern: a model from the graph's input to each op's input, run on its dummy input."""
    found = []
    for end in ends:
        model = tf_keras.Model(inputs=[x], outputs=[end])
        extra = {} if data is None else {"verification_datas": [data]}
        found.append(list(common_functions.dummy_tf_inference(model=model, inputs=[x], **extra).values())[0])
    return found


def test_each_layer_runs_once_and_every_prefix_gets_tensorflows_own_values(graph, layer_calls):
    x, ends = graph
    plain = _prefix_runs(x, ends)
    assert len(layer_calls) == 2 * (1 + 2 + 3 + 4 + 5)
    layer_calls.clear()
    with prefix.dummy_runs_shared():
        shared = _prefix_runs(x, ends)
    assert len(layer_calls) == 2 * 5, "every layer once"
    for a, b in zip(plain, shared):
        assert a.dtype == b.dtype and np.array_equal(a, b)


def test_other_input_values_are_computed_again(graph, layer_calls):
    x, ends = graph
    data = np.linspace(-1, 1, 12, dtype=np.float32).reshape(1, 3, 4)
    with prefix.dummy_runs_shared():
        ones = _prefix_runs(x, ends[:2])
        layer_calls.clear()
        other = _prefix_runs(x, ends[:2], data)
    assert len(layer_calls) == 2 * (1 + 1), "the first prefix computed, the second one's new layers only"
    expected = np.tanh(np.tanh(data * 1.5) * 2.5)
    np.testing.assert_allclose(other[1], expected, rtol=1e-6)
    assert not np.array_equal(ones[1], other[1])


def test_after_the_conversion_onnx2tfs_own_function_runs(graph, layer_calls):
    x, ends = graph
    with prefix.dummy_runs_shared():
        _prefix_runs(x, ends[:1])
    assert common_functions.dummy_tf_inference is not prefix.dummy_tf_inference, "given back"
    layer_calls.clear()
    prefix.dummy_tf_inference(model=tf_keras.Model(inputs=[x], outputs=[ends[1]]), inputs=[x])
    assert len(layer_calls) == 4, "no memo outside a conversion: every layer of the prefix runs"


def test_unchecked_versions_run_onnx2tfs_function(graph, monkeypatch):
    monkeypatch.setattr(prefix, "TF_KERAS_CHECKED", ())
    with prefix.dummy_runs_shared():
        assert common_functions.dummy_tf_inference is not prefix.dummy_tf_inference


def _squeeze_excite_chain(path, blocks: int = 4) -> None:
    """Conv, then squeeze-excitation blocks: a ReduceMean each, which onnx2tf checks with a dummy inference
    of the whole graph before it."""
    rng = np.random.default_rng(0)
    nodes, inits, last = [], [], "x"
    for i in range(blocks):
        w = numpy_helper.from_array(rng.normal(0, 0.3, (8, 8 if i else 3, 3, 3)).astype(np.float32), f"w{i}")
        inits.append(w)
        nodes += [helper.make_node("Conv", [last, f"w{i}"], [f"c{i}"], pads=[1, 1, 1, 1]),
                  helper.make_node("ReduceMean", [f"c{i}"], [f"m{i}"], axes=[2, 3], keepdims=1),
                  helper.make_node("Sigmoid", [f"m{i}"], [f"g{i}"]),
                  helper.make_node("Mul", [f"c{i}", f"g{i}"], [f"y{i}"])]
        last = f"y{i}"
    model = helper.make_model(
        helper.make_graph(nodes, "se", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 16, 16])],
                          [helper.make_tensor_value_info(last, TensorProto.FLOAT, [1, 8, 16, 16])], inits),
        opset_imports=[helper.make_opsetid("", 13)])
    onnx.save(model, str(path))


@pytest.mark.slow
def test_a_conversion_writes_the_same_files_with_fewer_layer_runs(tmp_path, monkeypatch, layer_calls):
    from pipeline.converters import onnx2tf_v1
    from pipeline.converters.base import ConversionOptions

    _squeeze_excite_chain(tmp_path / "se.onnx")
    made, calls = {}, {}
    for mode in ("shared", "plain"):
        if mode == "plain":
            monkeypatch.setattr(onnx2tf_v1, "dummy_runs_shared", contextlib.nullcontext)
        layer_calls.clear()
        out = tmp_path / mode
        out.mkdir()
        result = onnx2tf_v1.Onnx2TFV1().convert(tmp_path / "se.onnx", out, out / "log.txt",
                                                 ConversionOptions(outputs=("saved_model", "tflite_fp32")))
        made[mode], calls[mode] = tflite_graph(result.tflite["fp32"], names=False), len(layer_calls)
    # Byte for byte in fresh processes (the zoo's files); in one, tf_keras numbers the second one's layers on.
    assert made["plain"] == made["shared"], "the same operators, tensors and weights"
    assert calls["shared"] < calls["plain"]


def test_beyond_the_byte_budget_layers_are_computed_as_onnx2tf_does(graph, layer_calls, monkeypatch):
    x, ends = graph
    plain = _prefix_runs(x, ends)
    monkeypatch.setattr(prefix, "KEPT_BYTES", 2 * 3 * 4 * 4)  # the first two layers' outputs (1x3x4 float32)
    layer_calls.clear()
    with prefix.dummy_runs_shared():
        shared = _prefix_runs(x, ends)
    assert len(layer_calls) == 2 * (1 + 2 + 3 + 4 + 5) - 2 * 4, "only the first step's two ops reused, by the 4 later runs"
    assert all(np.array_equal(a, b) for a, b in zip(plain, shared))


def test_random_draws_and_what_is_computed_from_them_are_never_kept(layer_calls):
    x = tf_keras.Input(shape=(3, 4), batch_size=1, name="x")
    steady = tf.math.tanh(tf.math.multiply(x, 1.5))
    noisy = tf.math.add(steady, tf.random.uniform(tf.shape(steady)))  # onnx2tf's RandomUniformLike, say
    after = tf.math.tanh(noisy)
    with prefix.dummy_runs_shared():
        first, second = _prefix_runs(x, [after, after])
        layer_calls.clear()
        _prefix_runs(x, [after])
    assert not np.array_equal(first, second), "a fresh draw every run, as onnx2tf's own walk gives"
    ran = sorted(name.split(".")[-1].split("_")[0] for name in layer_calls)  # tf.math.tanh_1 -> tanh
    assert ran == ["add", "tanh", "uniform"], "the draw and what follows it run again; the steady part is kept"


def test_an_error_of_the_shared_walk_leaves_tf_keras_walk_to_decide(graph, monkeypatch):
    x, ends = graph
    plain = _prefix_runs(x, ends)

    def broken(self, references, values):
        raise RuntimeError("cannot key these inputs")

    monkeypatch.setattr(prefix._Memo, "_kept_for", broken)  # noqa: SLF001
    with prefix.dummy_runs_shared():
        shared = _prefix_runs(x, ends)
    assert all(np.array_equal(a, b) for a, b in zip(plain, shared)), "onnx2tf's check still runs, on its own walk"


def test_dropped_input_values_give_their_bytes_back(graph, monkeypatch):
    x, ends = graph
    monkeypatch.setattr(prefix, "KEPT_INPUTS", 2)
    with prefix.dummy_runs_shared():
        for step in range(4):
            _prefix_runs(x, ends[:1], np.full((1, 3, 4), step, np.float32))
        memo = prefix._memo  # noqa: SLF001
        assert len(memo._kept) == 2  # noqa: SLF001
        assert memo.kept_bytes == sum(k.bytes for k in memo._kept.values()) == 2 * 2 * 3 * 4 * 4  # noqa: SLF001
