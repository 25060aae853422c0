"""onnx2tf 1.x's TFLite files are converted from the SavedModel it wrote, not from its Keras model."""
from __future__ import annotations

import contextlib

import numpy as np
import pytest

from pipeline.converters import ConversionOptions, get_converter
from pipeline.converters import onnx2tf_v1
from pipeline.converters.onnx2tf_v1_tflite import (DYNAMIC_RANGE, FROM_CONCRETE_FUNCTION, FROM_KERAS_MODEL, FROM_SAVED_MODEL,
                                                   _Lite, _SkippingConverter)
from tests.converters.onnx2tf_graphs import tflite_graph
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
    with pytest.raises(ValueError, match="cannot convert this SavedModel"):  # no fallback: the error is onnx2tf's to see
        _SkippingConverter(_FakeConverter(None), {"fp16"}, None).convert()


def test_onnx2tf_s_dynamic_range_file_is_never_skipped_and_keeps_the_fp32_route():
    """onnx2tf converts its dynamic-range int8 file after fp32 and fp16, from its Keras model's concrete function,
    with Optimize.DEFAULT and no float16: not an fp32 file, whatever the config's artifacts skip."""
    import tensorflow as tf

    routes: dict[str, str] = {}
    _SkippingConverter(_FakeConverter(b"fp32"), {"fp16"}, None, (routes, FROM_SAVED_MODEL)).convert()
    dynamic = _SkippingConverter(_FakeConverter(b"int8 weights"), {"fp32", "fp16"}, None, (routes, FROM_CONCRETE_FUNCTION))
    dynamic.optimizations = [tf.lite.Optimize.DEFAULT]
    dynamic.target_spec.supported_types = []
    assert dynamic.convert() == b"int8 weights"
    assert routes == {"fp32": FROM_SAVED_MODEL, DYNAMIC_RANGE: FROM_CONCRETE_FUNCTION}


class _FakeLite:
    """tf.lite with a TFLiteConverter whose SavedModel cannot be loaded."""

    def __init__(self) -> None:
        self.TFLiteConverter = self

    def from_saved_model(self, *args, **kwargs):
        raise OSError("SavedModel file does not exist")

    def from_keras_model(self, model):
        return _FakeConverter(b"from keras")


def test_a_savedmodel_tensorflow_cannot_load_leaves_the_keras_route(tmp_path, capsys):
    (tmp_path / "saved_model.pb").write_bytes(b"")
    routes: dict[str, str] = {}
    converter = _Lite(_FakeLite(), set(), tmp_path, routes).from_keras_model("the Keras model")
    assert converter.convert() == b"from keras"
    assert routes == {"fp32": FROM_KERAS_MODEL}
    assert "loading the SavedModel for TFLite failed (OSError" in capsys.readouterr().out


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


def _two_outputs(path):
    """Two outputs whose names sort the other way from the graph's order, of different ranks."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    weight = numpy_helper.from_array(np.random.default_rng(0).standard_normal((4, 3, 3, 3)).astype(np.float32), "w")
    nodes = [helper.make_node("Conv", ["x", "w"], ["zeta"], name="conv_0", pads=[1, 1, 1, 1]),
             helper.make_node("ReduceMean", ["zeta"], ["alpha"], name="mean_1", axes=[2, 3], keepdims=0)]
    graph = helper.make_graph(nodes, "two", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 8, 8])],
                              [helper.make_tensor_value_info("zeta", TensorProto.FLOAT, [1, 4, 8, 8]),
                               helper.make_tensor_value_info("alpha", TensorProto.FLOAT, [1, 4])], initializer=[weight])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)]), str(path))
    return path


@pytest.mark.slow
def test_both_routes_give_the_same_operators_tensors_weights_and_signature(tmp_path, no_network, monkeypatch):
    source = _two_outputs(tmp_path / "two.onnx")
    made = {}
    for route in ("saved_model", "keras"):
        if route == "keras":  # no SavedModel where it looks: TensorFlow's Keras route, as onnx2tf does it
            real = onnx2tf_v1.tflite_from_saved_model
            monkeypatch.setattr(onnx2tf_v1, "tflite_from_saved_model",
                                lambda outputs, _dir, routes: real(outputs, tmp_path / "nowhere", routes))
        out = tmp_path / route
        out.mkdir()
        made[route] = get_converter().convert(source, out, out / "convert.log", ConversionOptions())
    assert made["keras"].made_by["tflite_fp32"].endswith("on its Keras model)")
    for precision in ("fp32", "fp16"):
        graphs = [tflite_graph(made[r].tflite[precision]) for r in ("saved_model", "keras")]
        assert graphs[0] == graphs[1], precision
    from ai_edge_litert.interpreter import Interpreter

    signatures = [Interpreter(model_path=str(made[r].tflite["fp32"])).get_signature_list() for r in ("saved_model", "keras")]
    assert signatures[0] == signatures[1]
    assert sorted(signatures[0]["serving_default"]["outputs"]) == ["alpha", "zeta"]


def test_a_load_is_shared_only_for_the_same_savedmodel_as_written_and_until_released(tmp_path, monkeypatch):
    import importlib
    import os

    from pipeline.converters.onnx2tf_v1_tflite import SharedLoads

    lite = importlib.import_module("tensorflow.lite.python.lite")
    loads = []
    monkeypatch.setattr(lite, "_load", lambda folder, tags=None, options=None: loads.append(folder) or object())
    folder = tmp_path / "saved_model"
    folder.mkdir()
    shared = SharedLoads(folder)
    with shared.installed():
        lite._load(str(folder), {"serve"})  # no saved_model.pb: TensorFlow's own load, which says so
        (folder / "saved_model.pb").write_bytes(b"first")
        first = lite._load(str(folder), {"serve"})
        assert lite._load(str(folder), {"serve"}) is first and len(loads) == 2
        assert lite._load(str(folder), {"serve"}, "options") is not first  # other arguments: TensorFlow's own load
        assert lite._load(str(tmp_path / "other"), {"serve"}) is not first
        (folder / "saved_model.pb").write_bytes(b"again")  # the same size, written again
        os.utime(folder / "saved_model.pb", ns=(1, 1))
        second = lite._load(str(folder), {"serve"})
        assert second is not first and len(loads) == 5
        shared.release()
        assert lite._load(str(folder), {"serve"}) is not second and len(loads) == 6
    assert lite._load(str(folder), {"serve"}) and len(loads) == 7  # outside the block: TensorFlow's own


def test_the_fp16_conversion_releases_the_shared_load_even_when_it_fails():
    import tensorflow as tf

    released = []
    converter = _SkippingConverter(_FakeConverter(b"model"), set(), None, after_fp16=lambda: released.append(True))
    assert converter.convert() == b"model" and not released  # fp32: the fp16 file still reads the SavedModel
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.target_spec.supported_types = [tf.float16]
    assert converter.convert() == b"model" and released == [True]
    failing = _SkippingConverter(_FakeConverter(None), set(), None, after_fp16=lambda: released.append(True))
    failing.optimizations = [tf.lite.Optimize.DEFAULT]
    failing.target_spec.supported_types = [tf.float16]
    with pytest.raises(ValueError):
        failing.convert()
    assert released == [True, True]


# One conversion in a fresh process (tf_keras numbers its models per process: two conversions in one process
# name their tensors apart), the SavedModel's loads shared or not; prints how many loads TensorFlow's TFLite
# converter module made.
CONVERT_ONCE = """
import contextlib, importlib, sys
from pathlib import Path
from pipeline.converters import ConversionOptions, get_converter, onnx2tf_v1_tflite
lite = importlib.import_module("tensorflow.lite.python.lite")
if sys.argv[3] == "apart":
    onnx2tf_v1_tflite.SharedLoads.installed = lambda self: contextlib.nullcontext()
real, loads = lite._load, []
lite._load = lambda *args, **kwargs: loads.append(args[0]) or real(*args, **kwargs)
out = Path(sys.argv[2])
get_converter().convert(Path(sys.argv[1]), out, out / "convert.log", ConversionOptions())
print(len(loads))
"""


@pytest.mark.slow
def test_the_savedmodel_is_loaded_once_for_both_files_and_they_are_the_same_bytes(tmp_path):
    """TensorFlow's converter loads the SavedModel in from_saved_model and again in each convert(): with the
    loads shared, the fp32 and fp16 files are byte for byte the files of three loads."""
    import subprocess
    import sys

    source = _two_outputs(tmp_path / "two.onnx")
    runs = {}
    for how in ("shared", "apart"):
        (tmp_path / how).mkdir()
        runs[how] = subprocess.Popen([sys.executable, "-c", CONVERT_ONCE, str(source), str(tmp_path / how), how],
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=tmp_path)
    loads = {}
    try:
        for how, run in runs.items():
            out, err = run.communicate(timeout=300)
            assert run.returncode == 0, f"the {how} conversion failed: {err[-2000:]}"
            loads[how] = out.split()[-1]
    finally:
        for run in runs.values():
            run.kill()
    assert loads == {"shared": "1", "apart": "3"}
    for name in ("model_float32.tflite", "model_float16.tflite"):
        assert (tmp_path / "shared" / name).read_bytes() == (tmp_path / "apart" / name).read_bytes(), name
