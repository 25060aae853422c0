"""pipeline/convert/fp16_patch.py: flushed epsilons raised in the fp16 file itself, for their guards only."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from pipeline.convert import fp16_patch
from pipeline.lint import tflite_fp16
from pipeline.lint.fp16 import FP16_TINY
from pipeline.lint.tflite_graph import TFLiteGraph, TFLiteOp
from tests.support import tflite_pair

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def models(tmp_path_factory) -> dict[str, dict[str, Path]]:
    """RMS norms with eps 1e-12 (flushed) and 1e-3 (kept); `shared` adds where(x > 0.5, x, 0): TF's float16
    converter stores its 0 and the flushed epsilon as one float16 zero, read through two DEQUANTIZE ops (as in
    BERT's fp16 file); `loop` runs the norm in a while loop (a second subgraph)."""
    import tensorflow as tf

    spec = [tf.TensorSpec([1, 4], tf.float32)]
    norm = lambda x, eps: x * tf.math.rsqrt(tf.reduce_mean(x * x, axis=-1, keepdims=True) + tf.constant(eps))  # noqa: E731
    functions = {
        "plain": tf.function(lambda x: norm(x, 1e-12), input_signature=spec),
        "kept": tf.function(lambda x: norm(x, 1e-3), input_signature=spec),
        "shared": tf.function(lambda x: norm(x, 1e-12) + tf.where(x > 0.5, x, tf.zeros_like(x) + tf.constant(0.0)),
                              input_signature=spec),
        "loop": tf.function(lambda x: tf.while_loop(lambda i, y: i < 2, lambda i, y: (i + 1, norm(y, 1e-12)),
                                                    (tf.constant(0), x))[1], input_signature=spec),
    }
    folder = tmp_path_factory.mktemp("fp16_patch")
    return {name: tflite_pair(folder, name, function) for name, function in functions.items()}


@pytest.fixture(scope="module")
def files(models) -> dict[str, Path]:
    return models["shared"]


def run(path: Path, x: np.ndarray) -> np.ndarray:
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_path=str(path))
    interpreter.allocate_tensors()
    interpreter.set_tensor(interpreter.get_input_details()[0]["index"], x)
    interpreter.invoke()
    return interpreter.get_tensor(interpreter.get_output_details()[0]["index"])


def expected(x: np.ndarray, eps: float) -> np.ndarray:
    x64 = x.astype(np.float64)
    return x64 / np.sqrt((x64 * x64).mean(-1, keepdims=True) + eps) + np.where(x64 > 0.5, x64, 0.0)


def test_the_guards_epsilon_is_raised_and_the_select_keeps_its_zero(files, tmp_path):
    shared = TFLiteGraph.read(files["fp16"])
    readers = [op for op in shared.ops if op.op == "DEQUANTIZE" and shared.constants.get(op.inputs[0]) is not None
               and shared.constants[op.inputs[0]].tolist() == [0.0]]
    assert len(readers) == 2 and readers[0].inputs == readers[1].inputs  # one stored zero, two readers
    patched = fp16_patch.patch_flushed(files["fp16"], files["fp32"], tmp_path / "cured.tflite")
    (patch,) = patched.patches
    assert patched.left == 0 and patch.old == pytest.approx(1e-12) and patch.new == FP16_TINY
    assert patch.readers == ("ADD (op 6) before RSQRT (op 7)",) and patch.tensor.endswith("constant")
    zeros, mixed = np.zeros((1, 4), np.float32), np.array([[0.0, 0.9, -0.3, 0.7]], np.float32)
    assert not np.isfinite(run(files["fp16"], zeros)).all()  # the uncured file: rsqrt(0 + 0)
    np.testing.assert_allclose(run(tmp_path / "cured.tflite", zeros), np.zeros((1, 4)))
    # the select still adds 0 where x <= 0.5 (had the shared zero been raised, 6.1e-05 would show there)
    np.testing.assert_allclose(run(tmp_path / "cured.tflite", mixed), expected(mixed, FP16_TINY), rtol=2e-3, atol=0)
    assert run(tmp_path / "cured.tflite", mixed)[0, 0] == 0.0


def test_without_the_float32_file_the_all_zeros_epsilon_is_raised(files, tmp_path):
    (patch,) = fp16_patch.patch_flushed(files["fp16"], None, tmp_path / "cured.tflite").patches
    assert patch.old == 0.0 and "no aligned float32 value" in patch.describe()
    assert np.isfinite(run(tmp_path / "cured.tflite", np.zeros((1, 4), np.float32))).all()


def test_a_file_with_nothing_flushed_is_not_written(models, tmp_path):
    kept = models["kept"]
    assert np.float16(1e-3) != 0 and TFLiteGraph.read(kept["fp16"]).constants  # float16 constants, none flushed
    patched = fp16_patch.patch_flushed(kept["fp16"], kept["fp32"], tmp_path / "cured.tflite")
    assert (patched.patches, patched.left, patched.aligned) == ([], 0, True) and not (tmp_path / "cured.tflite").exists()


def test_an_epsilon_read_by_nothing_else_changes_in_its_own_bytes_only(models, tmp_path):
    plain = models["plain"]
    (patch,) = fp16_patch.patch_flushed(plain["fp16"], plain["fp32"], tmp_path / "cured.tflite").patches
    assert not patch.copied and patch.new == FP16_TINY
    before, after = plain["fp16"].read_bytes(), (tmp_path / "cured.tflite").read_bytes()
    changed = [i for i, (a, b) in enumerate(zip(before, after)) if a != b]
    assert len(before) == len(after) and 1 <= len(changed) <= 2 and changed[-1] - changed[0] <= 1  # one float16 value
    cured = TFLiteGraph.read(tmp_path / "cured.tflite")
    assert [v.tolist() for v in cured.constants.values() if v.dtype == np.float16 and v.size == 1 and v[0] == np.float16(FP16_TINY)]
    zeros = np.zeros((1, 4), np.float32)
    assert not np.isfinite(run(plain["fp16"], zeros)).all() and np.isfinite(run(tmp_path / "cured.tflite", zeros)).all()


def test_a_file_with_control_flow_is_left_to_the_onnx_route(models, tmp_path):
    loop = models["loop"]
    assert TFLiteGraph.read(loop["fp16"]).subgraphs > 1
    patched = fp16_patch.patch_flushed(loop["fp16"], loop["fp32"], tmp_path / "cured.tflite")
    assert patched.patches == [] and patched.left == 1 and not (tmp_path / "cured.tflite").exists()


# tensors: 0 x, 1 mean, 2 eps (stored), 3 eps (dequantized), 4 var, 5 rsqrt, 6 y, 7 other, 8 floor, 9 sqrt
NORM = [TFLiteOp(0, "DEQUANTIZE", (2,), (3,)), TFLiteOp(1, "MEAN", (0,), (1,)), TFLiteOp(2, "ADD", (1, 3), (4,)),
        TFLiteOp(3, "RSQRT", (4,), (5,)), TFLiteOp(4, "MUL", (0, 5), (6,))]
NORM32 = [TFLiteOp(0, "MEAN", (0,), (1,)), TFLiteOp(1, "ADD", (1, 2), (4,)), TFLiteOp(2, "RSQRT", (4,), (5,)),
          TFLiteOp(3, "MUL", (0, 5), (6,))]


def graph_of(ops, value=0.0) -> TFLiteGraph:
    return TFLiteGraph(ops, {2: np.array([value], np.float16)}, {2: "eps"}, {2: (0, 2)})


def test_an_epsilon_whose_dequantize_also_feeds_another_op_is_left_for_the_onnx_route():
    other = NORM + [TFLiteOp(5, "SUB", (0, 3), (7,))]
    assert fp16_patch._entry(graph_of(other), None, {}, other[2], 1) is None
    assert fp16_patch._entry(graph_of(NORM), None, {}, NORM[2], 1) == (0, 0)  # the DEQUANTIZE's input is what changes


def test_one_dequantize_read_by_a_flushed_epsilon_and_by_the_models_own_zero_floor_is_left_alone():
    both = NORM + [TFLiteOp(5, "MAXIMUM", (0, 3), (8,)), TFLiteOp(6, "SQRT", (8,), (9,))]
    twin = TFLiteGraph(NORM32 + [TFLiteOp(4, "MAXIMUM", (0, 10), (8,)), TFLiteOp(5, "SQRT", (8,), (9,))],
                       {2: np.array([1e-12], np.float32), 10: np.array([0.0], np.float32)}, {})
    aligned = tflite_fp16.aligned(graph_of(both), twin)
    assert fp16_patch._flushed_guard(graph_of(both), twin, aligned, both[5], 1) is None  # 0 in float32 too
    assert fp16_patch._entry(graph_of(both), twin, aligned, both[2], 1) is None


def test_without_the_float32_value_an_all_zeros_floor_is_not_taken_for_an_epsilon():
    floor = [TFLiteOp(0, "DEQUANTIZE", (2,), (3,)), TFLiteOp(1, "MAXIMUM", (0, 3), (8,)), TFLiteOp(2, "SQRT", (8,), (9,))]
    assert fp16_patch._flushed_guard(graph_of(floor), None, {}, floor[1], 1) is None
    assert fp16_patch._flushed_guard(graph_of(NORM), None, {}, NORM[2], 1) is not None  # an all-zeros addend is


def test_only_the_flushed_values_of_a_constant_are_raised_and_counted():
    stored = TFLiteGraph(NORM, {2: np.array([0.0, 0.5, -0.0], np.float16)}, {2: "eps"}, {2: (0, 6)})
    twin = TFLiteGraph(NORM32, {2: np.array([-1e-12, 0.5, 0.0], np.float32)}, {})
    found = fp16_patch._flushed_guard(stored, twin, tflite_fp16.aligned(stored, twin), NORM[2], 1)
    assert found.mask.tolist() == [True, False, False]  # the model's own 0 stays
    assert found.cured.tolist() == [-np.float16(FP16_TINY), 0.5, 0.0]  # the sign kept
    patch = fp16_patch._Edit(found.cured, found.mask, found.original).patch("eps", False)
    assert (patch.values, patch.old, patch.new) == (1, pytest.approx(-1e-12), -float(np.float16(FP16_TINY)))
