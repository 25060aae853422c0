"""The vocabulary every stage shares: backend names, their precisions and labels, verdicts.

Values are plain strings (StrEnum), so they read and write as before in every JSON file.
"""
from __future__ import annotations

from enum import StrEnum


class Backend(StrEnum):
    PYTORCH = "pytorch"
    ORACLE = "pytorch_fp64"  # the float64 copy of the PyTorch model: the truth float32 aims at
    ORACLE_ONNX = "onnxruntime_fp64"  # ONNX Runtime on a float64 copy of the graph (ONNX route)
    # The float32 TFLite file with its constants rounded through float16: what a correct fp16 file computes
    FP16_STORAGE = "fp16_storage"
    ONNXRUNTIME = "onnxruntime"
    TF_SAVED_MODEL = "tf_saved_model"
    KERAS = "keras"
    TFLITE_FP32 = "tflite_fp32"
    TFLITE_FP16 = "tflite_fp16"
    TFLITE_INT8 = "tflite_int8"
    TFLITE_INT8_INTEGER_IO = "tflite_int8_integer_io"  # int8 inputs and outputs too (quantize.int8.integer_io)
    TFLITE_INT8_SELECTIVE = "tflite_int8_selective"  # int8 with the fewest layers kept in float (convert/int8_step.py)


class Precision(StrEnum):
    FP64 = "fp64"
    FP32 = "fp32"
    FP16 = "fp16"
    INT8 = "int8"


class Verdict(StrEnum):
    PASS = "pass"
    FAIL = "fail"
    INCONCLUSIVE = "inconclusive"


TF_BACKENDS = (Backend.TF_SAVED_MODEL, Backend.KERAS, Backend.TFLITE_FP32, Backend.TFLITE_FP16, Backend.TFLITE_INT8,
              Backend.TFLITE_INT8_INTEGER_IO, Backend.TFLITE_INT8_SELECTIVE)
ORACLES = (Backend.ORACLE, Backend.ORACLE_ONNX, Backend.FP16_STORAGE)

PRECISION = {
    Backend.PYTORCH: Precision.FP32, Backend.ONNXRUNTIME: Precision.FP32, Backend.TF_SAVED_MODEL: Precision.FP32,
    Backend.KERAS: Precision.FP32, Backend.TFLITE_FP32: Precision.FP32, Backend.TFLITE_FP16: Precision.FP16,
    Backend.TFLITE_INT8: Precision.INT8, Backend.TFLITE_INT8_INTEGER_IO: Precision.INT8,
    Backend.TFLITE_INT8_SELECTIVE: Precision.INT8,
    Backend.ORACLE: Precision.FP64, Backend.ORACLE_ONNX: Precision.FP64,
    Backend.FP16_STORAGE: Precision.FP32,
}

LABELS = {
    Backend.PYTORCH: "PyTorch", Backend.ORACLE: "PyTorch float64", Backend.ORACLE_ONNX: "ONNX Runtime float64",
    Backend.ONNXRUNTIME: "ONNX Runtime", Backend.TF_SAVED_MODEL: "TF SavedModel", Backend.KERAS: "Keras",
    Backend.TFLITE_FP32: "TFLite fp32", Backend.TFLITE_FP16: "TFLite fp16", Backend.TFLITE_INT8: "TFLite int8",
    Backend.TFLITE_INT8_INTEGER_IO: "TFLite int8 (int8 I/O)", Backend.TFLITE_INT8_SELECTIVE: "TFLite int8 (selective)",
    Backend.FP16_STORAGE: "fp16 storage (TFLite fp32 file, constants as float16)",
}


def label(backend: str) -> str:
    """A backend's name for people ("TFLite fp16"); unknown names are shown as they are."""
    return LABELS.get(backend, backend)
