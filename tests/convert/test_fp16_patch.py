"""pipeline/convert/fp16_patch.py: flushed epsilons raised in the fp16 file itself, for their guards only."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from pipeline.convert import fp16_patch
from pipeline.lint.fp16 import FP16_TINY
from pipeline.lint.tflite_graph import TFLiteGraph, TFLiteOp

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> dict[str, Path]:
    """x * rsqrt(mean(x*x) + 1e-12) + where(x > 0.5, x, 0): TF's float16 converter stores the epsilon and the
    select's 0 as one float16 zero, read through two DEQUANTIZE ops (as in BERT's fp16 file)."""
    import tensorflow as tf

    @tf.function(input_signature=[tf.TensorSpec([1, 4], tf.float32)])
    def rms(x):
        masked = tf.where(x > 0.5, x, tf.zeros_like(x) + tf.constant(0.0))
        return x * tf.math.rsqrt(tf.reduce_mean(x * x, axis=-1, keepdims=True) + tf.constant(1e-12)) + masked

    folder = tmp_path_factory.mktemp("fp16_patch")
    made = {}
    for precision in ("fp32", "fp16"):
        converter = tf.lite.TFLiteConverter.from_concrete_functions([rms.get_concrete_function()], rms)
        if precision == "fp16":
            converter.optimizations = [tf.lite.Optimize.DEFAULT]
            converter.target_spec.supported_types = [tf.float16]
        made[precision] = folder / f"{precision}.tflite"
        made[precision].write_bytes(converter.convert())
    return made


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


def test_a_file_with_nothing_flushed_is_not_written(files, tmp_path):
    patched = fp16_patch.patch_flushed(files["fp32"], None, tmp_path / "cured.tflite")
    assert patched.patches == [] and patched.left == 0 and not (tmp_path / "cured.tflite").exists()


def test_an_epsilon_whose_dequantize_also_feeds_another_op_is_left_for_the_onnx_route():
    # tensors: 0 x, 1 mean, 2 eps (stored), 3 eps (dequantized), 4 var, 5 rsqrt, 6 y, 7 other
    ops = [TFLiteOp(0, "DEQUANTIZE", (2,), (3,)), TFLiteOp(1, "MEAN", (0,), (1,)), TFLiteOp(2, "ADD", (1, 3), (4,)),
           TFLiteOp(3, "RSQRT", (4,), (5,)), TFLiteOp(4, "MUL", (0, 5), (6,)), TFLiteOp(5, "SUB", (0, 3), (7,))]
    graph = TFLiteGraph(ops, {2: np.array([0.0], np.float16)}, {2: "eps"}, {2: (0, 2)})
    assert fp16_patch._entry(graph, ops[2], 1, 2) is None
    alone = TFLiteGraph(ops[:5], {2: np.array([0.0], np.float16)}, {2: "eps"}, {2: (0, 2)})
    assert fp16_patch._entry(alone, ops[2], 1, 2) == (0, 0)  # the DEQUANTIZE's input is what changes
