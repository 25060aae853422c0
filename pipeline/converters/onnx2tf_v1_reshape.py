"""onnx2tf 1.x's Reshape permutation search, decided with numpy first: the same choice, one Keras model.

In strict mode (its default), onnx2tf checks a Reshape of a rank >= 3 tensor against ONNX Runtime's output
by trying the permutations of the input's axes, in `itertools.permutations` order: for each it builds a
Keras model `reshape(transpose(x, perm), final_shape)`, runs it on the tensor its graph gives there,
compares it with ONNX Runtime's tensor (`onnx_tf_tensor_validation`, rtol and atol 0), keeps the
permutation with the smallest error (the first of equal ones; a candidate that raises is skipped) and
stops at the first whose error is below 1e-3. Where none comes below it (behind a layer it converted
wrong, after a random op, on NaN or Inf), it tries them all: a rank-6 window partition has 720. A tiny
Swin's conversion built 4,584 such Keras models (71 s; 16 s with this, one rough measurement each, beside
another run).

A transpose and a reshape move numbers without arithmetic, so numpy's `reshape(transpose(x, perm),
shape)` holds the very numbers TensorFlow's does. While onnx2tf converts, the `itertools.permutations` its
Reshape module calls for that search runs the search first with numpy and onnx2tf's own comparison, on
the same tensors (read from the search's frame), and yields only the permutation the search ends on, or
none where no candidate would be kept (the loop then keeps the identity, as after trying them all). The
loop builds one Keras model, for that permutation, and keeps it as the full search would: the same
operations with the same arguments (tests/converters/test_onnx2tf_v1_reshape.py). Only tf_keras's
automatic layer names differ (tf.reshape_12 for tf.reshape_731): each skipped candidate would have taken
a number from its counters.

Anywhere else, where the search's tensors are not what this expects (a symbolic shape, no ONNX tensor, a
dtype onnx2tf's comparison does not know), or with an onnx2tf whose loop was not checked against this
(CHECKED_VERSIONS), `itertools.permutations` is itself and the full search runs.
"""
from __future__ import annotations

import contextlib
import itertools
import sys
from importlib import metadata
from typing import Callable, Iterable, Iterator

import numpy as np

from pipeline.patching import Overlay, optional_module, replaced

# onnx2tf versions whose Reshape search (ops/Reshape.py) this mirrors: the permutation order, the strict `<`,
# rtol and atol 0, the sum of `onnx_tf_tensor_validation`'s errors, the early stop below EARLY_STOP.
CHECKED_VERSIONS = ("1.29.24",)
EARLY_STOP = 1e-3


@contextlib.contextmanager
def reshape_search_decided() -> Iterator[None]:
    """During onnx2tf's convert(): its Reshape permutation search decided with numpy (see the module docstring)."""
    module = optional_module("onnx2tf.ops.Reshape")
    common = optional_module("onnx2tf.utils.common_functions")
    validation = getattr(common, "onnx_tf_tensor_validation", None)
    if module is None or validation is None or getattr(module, "itertools", None) is not itertools \
            or onnx2tf_version() not in CHECKED_VERSIONS:
        yield
        return
    known = frozenset(getattr(optional_module("onnx2tf.utils.enums"), "NUMPY_DTYPES_TO_TF_DTYPES", {}))
    with replaced(module, "itertools", Overlay(itertools, permutations=_permutations(validation, known))):
        yield


def onnx2tf_version() -> str | None:
    try:
        return metadata.version("onnx2tf")
    except metadata.PackageNotFoundError:
        return None


def _permutations(validation: Callable, known: frozenset) -> Callable:
    """itertools.permutations, which inside onnx2tf's Reshape search gives only what the search would keep."""
    def permutations(iterable: Iterable, r: int | None = None) -> Iterator[tuple]:
        axes = tuple(iterable)
        search = _search(sys._getframe(1).f_locals, axes, known) if r is None else None
        if search is None:
            return itertools.permutations(axes, r)
        chosen = decided(*search, validation)
        return iter([chosen] if chosen is not None else [])  # none: the loop keeps the identity, as after all

    return permutations


def _search(frame: dict, axes: tuple, known: frozenset) -> tuple | None:
    """The search's input tensor, ONNX Runtime's tensor and the target shape, from onnx2tf's make_node frame;
    None where this is not that search or a value is not what numpy and onnx2tf's comparison reproduce."""
    data, onnx_tensors, shape = frame.get("validation_data"), frame.get("onnx_tensor_infos"), frame.get("final_shape")
    if not isinstance(data, np.ndarray) or not isinstance(onnx_tensors, dict) or len(onnx_tensors) != 1:
        return None
    if axes != tuple(range(data.ndim)) or frame.get("tensor_rank") != data.ndim:
        return None
    shape = _static_shape(shape)
    onnx_tensor = next(iter(onnx_tensors.items()))
    if shape is None or not isinstance(onnx_tensor[1], np.ndarray):
        return None
    if data.dtype not in known or onnx_tensor[1].dtype not in known:  # onnx2tf's comparison would raise
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


def decided(data: np.ndarray, onnx_tensor: tuple, shape: tuple[int, ...], validation: Callable) -> tuple[int, ...] | None:
    """The permutation onnx2tf's search keeps (the first with the smallest error, or the first below
    EARLY_STOP), with numpy in place of its Keras models; None where it keeps none (every reshape refused,
    every error NaN), so that its loop keeps the identity."""
    name, expected = onnx_tensor
    best, best_error = None, sys.maxsize
    for perm in itertools.permutations(range(data.ndim)):
        try:
            moved = np.reshape(np.transpose(data, perm), shape)
        except ValueError:  # TensorFlow refuses the same reshape: the search skips it
            continue
        checked = validation(output_pairs={(name, "reshape"): (expected, moved)}, rtol=0.0, atol=0.0)
        error = sum(value[2] for value in checked.values())
        if error < best_error:
            best, best_error = perm, error
            if best_error < EARLY_STOP:
                break
    return best
