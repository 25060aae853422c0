"""onnx2tf 1.x's tracing wrappers are called as written, and the traced graphs are those AutoGraph made."""
from __future__ import annotations

import contextlib

import numpy as np
import pytest

tf = pytest.importorskip("tensorflow")
tf_keras = pytest.importorskip("tf_keras")

from pipeline.converters import ConversionOptions, get_converter  # noqa: E402
from pipeline.converters import onnx2tf_v1, onnx2tf_v1_trace  # noqa: E402
from tests.converters.onnx2tf_graphs import tflite_graph  # noqa: E402
from tests.converters.test_onnx2tf_v1_tflite import _two_outputs  # noqa: E402


def _is_artifact(fn) -> bool:
    from tensorflow.python.autograph.impl import api

    return api.is_autograph_artifact(fn)


def test_tf_function_inside_onnx2tf_marks_what_it_traces_and_is_tensorflow_s_otherwise():
    import onnx2tf.onnx2tf as module

    real = module.tf
    with onnx2tf_v1_trace.wrappers_as_written():
        stand_in = module.tf
        assert stand_in is not real and stand_in.TensorSpec is real.TensorSpec and stand_in.lite is real.lite
        wrapper = lambda *inputs: inputs[0] * 2.0  # noqa: E731 - onnx2tf's kind of wrapper
        traced = stand_in.function(func=wrapper, input_signature=[tf.TensorSpec([2], tf.float32)])
        assert _is_artifact(wrapper)
        np.testing.assert_array_equal(traced(tf.constant([1.0, 2.0])).numpy(), [2.0, 4.0])
        decorator = stand_in.function(input_signature=[tf.TensorSpec([], tf.float32)])  # no function yet: a decorator
        assert decorator(lambda x: x + 1.0)(tf.constant(1.0)).numpy() == 2.0
    assert module.tf is real


def test_without_the_mark_nothing_changes(monkeypatch):
    import onnx2tf.onnx2tf as module

    monkeypatch.setattr(onnx2tf_v1_trace, "_artifact_mark", lambda: None)
    fn = lambda: None  # noqa: E731
    assert onnx2tf_v1_trace.as_written(fn) is fn and not _is_artifact(fn)
    real = module.tf
    with onnx2tf_v1_trace.wrappers_as_written():
        assert module.tf is real


class _Branching(tf_keras.layers.Layer):
    """A layer whose call needs AutoGraph: a Python `if` on a tensor."""

    def call(self, x):
        if tf.reduce_sum(x) > 0:
            return x * 2.0
        return x - 1.0


def test_a_wrapper_called_as_written_still_has_its_layers_converted(monkeypatch):
    """AutoGraph does not transpile the marked wrapper, but still converts a layer's call inside it: the
    model is traced as it was through AutoGraph's converted wrapper."""
    from tensorflow.python.autograph.impl import api

    inputs = tf_keras.Input(shape=(3,), batch_size=1)
    model = tf_keras.Model(inputs, _Branching()(inputs))
    transpiled = []
    real = api._TRANSPILER.transform  # noqa: SLF001
    monkeypatch.setattr(api._TRANSPILER, "transform", lambda fn, *a, **k: transpiled.append(fn) or real(fn, *a, **k))  # noqa: SLF001
    wrapper = onnx2tf_v1_trace.as_written(lambda *xs: model(xs))
    traced = tf.function(wrapper, input_signature=[tf.TensorSpec([1, 3], tf.float32)])
    np.testing.assert_array_equal(traced(tf.constant([[1.0, 2.0, 3.0]])).numpy(), [[2.0, 4.0, 6.0]])
    np.testing.assert_array_equal(traced(tf.constant([[-1.0, -2.0, -3.0]])).numpy(), [[-2.0, -3.0, -4.0]])
    assert wrapper not in transpiled and any(getattr(fn, "__name__", "") == "call" for fn in transpiled)


def test_a_marked_wrapper_traces_the_very_graph_of_autograph_s_converted_one():
    """onnx2tf's concrete-function wrapper, traced both ways: the same operations, by name and type, in order."""
    inputs = tf_keras.Input(shape=(3,), batch_size=1)
    x = tf.math.multiply(_Branching()(inputs), np.arange(3, dtype=np.float32))
    model = tf_keras.Model(inputs, tf.nn.relu(tf.linalg.matmul(x, np.ones((3, 2), np.float32))))
    graphs = []
    for mark in (lambda fn: fn, onnx2tf_v1_trace.as_written):
        wrapper = mark(lambda *xs: model(xs))
        graph = tf.function(wrapper, input_signature=[tf.TensorSpec([1, 3], tf.float32)]).get_concrete_function().graph
        graphs.append([(op.type, op.name) for op in graph.get_operations()])
    assert graphs[0] == graphs[1] and any(t == "If" or t == "StatelessIf" for t, _ in graphs[0])


def _signature_graph(saved_model) -> tuple:
    """serving_default's operators (types, in order) and its outputs on one input."""
    signature = tf.saved_model.load(str(saved_model)).signatures["serving_default"]
    ops = sorted(op.type for op in signature.graph.get_operations())
    (key,) = signature.structured_input_signature[1]
    x = np.random.default_rng(3).standard_normal((1, 8, 8, 3)).astype(np.float32)
    outputs = {name: value.numpy() for name, value in signature(**{key: tf.constant(x)}).items()}
    return ops, outputs


@pytest.mark.slow
def test_the_files_are_those_autograph_s_converted_wrappers_made(tmp_path, no_network, monkeypatch):
    from tensorflow.python.autograph.impl import api

    source = _two_outputs(tmp_path / "two.onnx")
    made, transpiled = {}, {}
    real = api._TRANSPILER.transform  # noqa: SLF001
    for way in ("as_written", "autograph"):
        if way == "autograph":  # onnx2tf's wrappers converted by AutoGraph, as without the pipeline
            monkeypatch.setattr(onnx2tf_v1, "wrappers_as_written", contextlib.nullcontext)
            monkeypatch.setattr(onnx2tf_v1, "as_written", lambda fn: fn)
        seen = transpiled[way] = []
        monkeypatch.setattr(api._TRANSPILER, "transform", lambda fn, *a, seen=seen, **k: seen.append(fn.__name__) or real(fn, *a, **k))  # noqa: SLF001
        out = tmp_path / way
        out.mkdir()
        made[way] = get_converter().convert(source, out, out / "convert.log", ConversionOptions())
    assert not {"named", "<lambda>"} & set(transpiled["as_written"])
    assert {"named", "<lambda>"} <= set(transpiled["autograph"]), "the comparison is with AutoGraph's converted wrappers"
    for precision in ("fp32", "fp16"):
        graphs = [tflite_graph(made[w].tflite[precision]) for w in made]
        assert graphs[0] == graphs[1], precision
    (ops, outputs), (their_ops, their_outputs) = (_signature_graph(made[w].saved_model) for w in made)
    assert ops == their_ops
    assert outputs.keys() == their_outputs.keys() == {"alpha", "zeta"}
    for name in outputs:
        np.testing.assert_array_equal(outputs[name], their_outputs[name])
