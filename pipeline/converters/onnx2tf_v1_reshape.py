"""onnx2tf 1.x's Reshape permutation search, decided with numpy first: the same choice, one Keras model.

In strict mode (its default), onnx2tf checks a Reshape of a rank >= 3 tensor against ONNX Runtime's output
by trying the permutations of the input's axes, in `itertools.permutations` order: for each it builds a
Keras model `reshape(transpose(x, perm), final_shape)`, runs it on the tensor its graph gives there,
compares it with ONNX Runtime's tensor (`onnx_tf_tensor_validation`, rtol and atol 0), keeps the
permutation with the smallest error (the first of equal ones) and stops at the first below 1e-3. Where no
permutation is right, it tries them all: a rank-6 window partition has 720. A tiny Swin's conversion
built 4,821 such Keras models, about 60 s of its 70 s.

A transpose and a reshape move numbers without arithmetic, so numpy's `reshape(transpose(x, perm),
shape)` holds the very numbers TensorFlow's does. While onnx2tf converts, the `itertools.permutations` its
Reshape module calls for that search runs the search first with numpy and onnx2tf's own comparison, on
the same tensors (read from the search's frame), and yields only the permutation the search ends on. The
loop then builds one Keras model, for that permutation, and keeps it exactly as the full search would
have (tests/converters/test_onnx2tf_v1_reshape.py: the same permutation on every case, and the same
converted graph).

Anywhere else, or where the search's tensors are not what this expects (a symbolic shape, no ONNX
tensor, a layout it cannot read), `itertools.permutations` is itself and the full search runs.
"""
from __future__ import annotations

import contextlib
import itertools
import sys
from typing import Iterator

import numpy as np

from pipeline.patching import Overlay, optional_module, replaced

EARLY_STOP = 1e-3  # onnx2tf stops at the first permutation whose error is below this (ops/Reshape.py)


@contextlib.contextmanager
def reshape_search_decided() -> Iterator[None]:
    """During onnx2tf's convert(): its Reshape permutation search decided with numpy (see the module docstring)."""
    module = optional_module("onnx2tf.ops.Reshape")
    validation = getattr(optional_module("onnx2tf.utils.common_functions"), "onnx_tf_tensor_validation", None)
    if module is None or validation is None or getattr(module, "itertools", None) is not itertools:
        yield
        return
    with replaced(module, "itertools", Overlay(itertools, permutations=_permutations(validation))):
        yield


def _permutations(validation):
    def permutations(iterable, r=None):
        axes = tuple(iterable)
        search = _search(sys._getframe(1).f_locals, axes) if r is None else None
        if search is None:
            return itertools.permutations(axes, r)
        chosen = decided(*search, validation)
        return iter([chosen]) if chosen is not None else itertools.permutations(axes)

    return permutations


def _search(frame: dict, axes: tuple) -> tuple | None:
    """The search's input tensor, ONNX Runtime's tensor and the target shape, from onnx2tf's make_node frame;
    None where this is not that search or a value is not what numpy can reproduce."""
    data, onnx_tensors, shape = frame.get("validation_data"), frame.get("onnx_tensor_infos"), frame.get("final_shape")
    if not isinstance(data, np.ndarray) or not isinstance(onnx_tensors, dict) or len(onnx_tensors) != 1:
        return None
    if axes != tuple(range(data.ndim)) or frame.get("tensor_rank") != data.ndim:
        return None
    shape = _static_shape(shape)
    onnx_tensor = next(iter(onnx_tensors.items()))
    if shape is None or not isinstance(onnx_tensor[1], np.ndarray):
        return None
    return data, onnx_tensor, shape


def _static_shape(shape) -> tuple[int, ...] | None:
    """The reshape's target as integers (a list, or a constant tensor of them); None if symbolic."""
    value = shape.numpy() if hasattr(shape, "numpy") and not hasattr(shape, "_keras_history") else shape
    if isinstance(value, np.ndarray) and value.ndim == 1 and np.issubdtype(value.dtype, np.integer):
        return tuple(int(v) for v in value)
    if isinstance(value, (list, tuple)) and all(isinstance(v, (int, np.integer)) and not isinstance(v, bool) for v in value):
        return tuple(int(v) for v in value)
    return None


def decided(data: np.ndarray, onnx_tensor: tuple, shape: tuple[int, ...], validation) -> tuple[int, ...] | None:
    """The permutation onnx2tf's search ends on (the first with the smallest error, or the first below
    EARLY_STOP), with numpy in place of its Keras models; None where no permutation could be tried."""
    best, best_error = None, sys.maxsize
    for perm in itertools.permutations(range(data.ndim)):
        try:
            moved = np.reshape(np.transpose(data, perm), shape)
        except ValueError:  # TensorFlow refuses the same reshape: the search skips it
            continue
        name, expected = onnx_tensor
        checked = validation(output_pairs={(name, "reshape"): (expected, moved)}, rtol=0.0, atol=0.0)
        error = sum(value[2] for value in checked.values())
        if error < best_error:
            best, best_error = perm, error
            if best_error < EARLY_STOP:
                break
    return best
