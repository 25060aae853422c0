"""pipeline/lint/rules/tflite_fp16_constants.py: what float16 did to a converted fp16 file's constants."""
from __future__ import annotations

import numpy as np
import pytest

from pipeline.lint.context import LintContext
from pipeline.lint.rules import tflite_fp16_constants
from pipeline.lint.tflite_graph import TFLiteGraph, TFLiteOp
from tests.support import tflite_pair

# x -> MEAN -> ADD(eps) -> RSQRT -> MUL(x): tensors 0 x, 1 mean, 2 eps (stored), 3 eps (dequantized), 4 var, 5 rsqrt, 6 y
OPS16 = [TFLiteOp(0, "DEQUANTIZE", (2,), (3,)), TFLiteOp(1, "MEAN", (0,), (1,)), TFLiteOp(2, "ADD", (1, 3), (4,)),
         TFLiteOp(3, "RSQRT", (4,), (5,)), TFLiteOp(4, "MUL", (0, 5), (6,))]
OPS32 = [TFLiteOp(0, "MEAN", (0,), (1,)), TFLiteOp(1, "ADD", (1, 2), (4,)), TFLiteOp(2, "RSQRT", (4,), (5,)),
         TFLiteOp(3, "MUL", (0, 5), (6,))]


def pair(eps: float) -> tuple[TFLiteGraph, TFLiteGraph]:
    fp16 = TFLiteGraph(OPS16, {2: np.array([eps], np.float16)}, {})
    fp32 = TFLiteGraph(OPS32, {2: np.array([eps], np.float32)}, {})
    return fp16, fp32


def check(fp16, fp32) -> list:
    return list(tflite_fp16_constants.findings(fp16, fp32, "model_float16.tflite"))


def test_flushed_epsilon_before_rsqrt_is_a_warning():
    (finding,) = check(*pair(1e-12))
    assert (finding.severity, finding.node, finding.op_type) == ("warning", "model_float16.tflite op 2", "ADD")
    assert "input 1 is stored as 0 (1e-12 in the float32 file), before RSQRT (op 3)" in finding.message


def test_without_the_float32_file_an_all_zeros_addend_is_named():
    fp16, _ = pair(1e-12)
    (finding,) = check(fp16, None)
    assert "an all-zeros constant" in finding.message


def test_kept_epsilon_and_the_models_own_zero_have_no_finding():
    assert check(*pair(1e-5)) == []
    assert check(*pair(0.0)) == []  # the float32 file adds 0 too: not float16's doing


def test_clamped_mask_is_a_note():
    fp16 = TFLiteGraph([TFLiteOp(0, "DEQUANTIZE", (2,), (3,)), TFLiteOp(1, "ADD", (0, 3), (4,))],
                       {2: np.array([0, -65504], np.float16)}, {})
    fp32 = TFLiteGraph([TFLiteOp(0, "ADD", (0, 2), (4,))], {2: np.array([0, -3.4e38], np.float32)}, {})
    (finding,) = check(fp16, fp32)
    assert finding.severity == "info" and "holds -65504 where the float32 file holds -3.4e+38" in finding.message


@pytest.mark.slow
def test_real_files_from_tensorflows_converter(tmp_path):
    """TF's float16 converter stores 1e-12 as 0: the rule reads that from the flatbuffer."""
    import tensorflow as tf

    @tf.function(input_signature=[tf.TensorSpec([1, 4], tf.float32)])
    def rms(x):
        return x * tf.math.rsqrt(tf.reduce_mean(x * x, axis=-1, keepdims=True) + tf.constant(1e-12))

    files = tflite_pair(tmp_path, "rms", rms)
    (finding,) = tflite_fp16_constants.check(LintContext(None, tflite=files))
    assert finding.op_type == "ADD" and "(1e-12 in the float32 file), before RSQRT" in finding.message
