"""ONNX -> TensorFlow converters behind one small, version-independent interface."""
from __future__ import annotations

from pipeline.converters.base import ConversionOptions, ConversionResult, Converter


def get_converter(name: str = "onnx2tf") -> Converter:
    """The converter registered under `name`."""
    from pipeline.converters.onnx2tf_v1 import Onnx2TFV1
    from pipeline.converters.onnx2tf_v2 import Onnx2TFV2

    known = {"onnx2tf": Onnx2TFV1, "onnx2tf2": Onnx2TFV2}
    if name not in known:
        raise KeyError(f"unknown converter '{name}'; available: {', '.join(known)}")
    return known[name]()


__all__ = ["ConversionOptions", "ConversionResult", "Converter", "get_converter"]
