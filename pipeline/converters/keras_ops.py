"""TF ops that onnx2tf 1.x calls in forms a .keras file cannot hold, given forms it can.

Two of tf_keras's limits break the Keras files of some models while their SavedModel and TFLite
files (traced from the live model) are right. Both are worked around while onnx2tf builds its model.

**A constant first operand loses its dtype.** A TF op called on Keras tensors is one TFOpLambda layer;
a constant among its arguments is written to the file as a JSON list of numbers. When the constant
is the op's first argument, the load turns each number into its own default-typed tensor (int32 for
integers), so an int64 constant added to or multiplied with an int64 tensor fails to load: "Input 'y'
of 'AddV2' Op has type int64 that does not match type int32 of argument 'x'" (RoBERTa's and XLM-R's
position ids, FocalNet). A constant in a later argument is converted with the first argument's dtype,
so for ops whose two numeric operands commute exactly (add, multiply, equal, not_equal, the logical
and bitwise ands, ors and xors; not maximum and minimum, whose NaN handling depends on the order)
the tensor is passed first and the constant second: the same
numbers, bit for bit, in every file. A subtraction `c - t` whose constant the list cannot keep (any
dtype but float32, int32 and bool) is built as `(-t) + c`, which IEEE and two's-complement arithmetic
make the same numbers. An op that only moves values (gather, gather_nd, reshape, tile, broadcast_to,
slice, strided_slice, transpose) from an int64 constant whose values fit int32 (RoBERTa's position
ids gather from one) moves them from the int32 constant instead, and casts its result back to int64:
the same values.

**Positional arguments after the first are dropped.** A TFOpLambda's config keeps the op's first
positional argument and its keyword arguments, and drops any further positional arguments.
`tf.meshgrid(*tensors, indexing="ij")`, which onnx2tf's GatherElements, ScatterElements and AffineGrid
call, therefore comes back from the file with one tensor instead of several, and its
second grid no longer exists: the load fails with "IndexError: list index out of range" (RoBERTa and
XLM-R, whose position ids go through GatherElements). The SavedModel and TFLite files are not
affected, since they are traced from the live model.

So `tf.meshgrid` of integer tensors is computed instead from ops that each take one tensor and keep
no dtype argument (a dtype argument comes back from the file as a string,
which tf.size and tf.shape then refuse): each tensor reshaped along its own axis, then broadcast to the
grid's shape by adding the others times zero. The same integer grids, and a Keras file that loads.
Floating-point grids keep tf.meshgrid (inf times zero is not zero).
"""
from __future__ import annotations

import contextlib
from typing import Iterator

import numpy as np

from pipeline.patching import replaced


# TF ops (tf_keras's names for them) whose numeric operands x and y commute exactly
_COMMUTATIVE = frozenset({
    "__operators__.add", "math.add", "math.multiply", "math.equal", "math.not_equal", "math.logical_and", "math.logical_or", "math.logical_xor", "bitwise.bitwise_and",
    "bitwise.bitwise_or", "bitwise.bitwise_xor",
})
_SUBTRACT = frozenset({"__operators__.sub", "math.subtract"})
# TF ops that only move the values of their first argument (tf_keras's names for them)
_MOVES_VALUES = frozenset({
    "gather", "compat.v1.gather", "gather_nd", "compat.v1.gather_nd", "reshape", "tile", "broadcast_to", "slice",
    "strided_slice", "transpose", "compat.v1.transpose",
})
_INT32 = (-2**31, 2**31 - 1)


@contextlib.contextmanager
def keras_savable_ops() -> Iterator[None]:
    """For as long as the context lasts: commutative ops take a Keras tensor first, and `tf.meshgrid`
    of integers is reshapes and adds."""
    import tensorflow as tf
    from tensorflow.python.util.tf_export import get_canonical_name_for_symbol
    from tf_keras.src.layers.core import tf_op_layer

    real = tf.meshgrid
    dispatch = tf_op_layer.KerasOpDispatcher.handle

    def handle(dispatcher, op, args, kwargs):
        name = get_canonical_name_for_symbol(op, add_prefix_to_v1_names=True)  # tf_keras's name for the op, once
        swapped = _negated_subtraction(name, args, kwargs)
        if swapped is not None:
            return dispatch(dispatcher, tf.math.add, (), swapped)
        narrowed = _narrowed_source(name, op, args, kwargs)
        if narrowed is not None:
            moved = dispatch(dispatcher, op, *narrowed)
            return moved if moved is dispatcher.NOT_SUPPORTED else tf.cast(moved, tf.int64)
        return dispatch(dispatcher, op, *_tensor_first(name, args, kwargs))

    def meshgrid_or_real(*tensors, indexing: str = "xy", name=None):
        if tensors and all(tensor.dtype.is_integer for tensor in tensors):
            return meshgrid(*tensors, indexing=indexing)
        return real(*tensors, indexing=indexing, name=name)

    with replaced(tf, "meshgrid", meshgrid_or_real), replaced(tf_op_layer.KerasOpDispatcher, "handle", handle):
        yield


def _tensor_first(name: str | None, args: tuple, kwargs: dict) -> tuple[tuple, dict]:
    """The call's arguments with x and y swapped when the op (tf_keras's `name` for it) commutes, x is a
    constant and y a numeric Keras tensor."""
    named = _constant_then_tensor(name in _COMMUTATIVE, args, kwargs)
    if named is None:
        return args, kwargs
    return (), dict(named, x=named["y"], y=named["x"])


def _negated_subtraction(name: str | None, args: tuple, kwargs: dict) -> dict | None:
    """add's arguments (-y, x) for a subtraction x - y of a constant x the file cannot type and a Keras
    tensor y; None for any other call."""
    import tensorflow as tf

    named = _constant_then_tensor(name in _SUBTRACT, args, kwargs)
    if named is None:
        return None
    dtype = tf.as_dtype(named["y"].dtype)
    if dtype in (tf.float32, tf.int32, tf.bool) or dtype.is_unsigned:  # TF's Neg has no unsigned kernel
        return None
    return dict(named, x=tf.math.negative(named["y"]), y=named["x"])


def _narrowed_source(name: str | None, op, args: tuple, kwargs: dict) -> tuple[tuple, dict] | None:
    """The call's arguments with its first one as int32 when op only moves values, that argument is an
    int64 constant whose values fit int32, and another argument is a Keras tensor; None otherwise."""
    import inspect

    import tensorflow as tf

    if name not in _MOVES_VALUES:
        return None
    first = next(iter(inspect.signature(op).parameters))
    source = args[0] if args else kwargs.get(first)
    if source is None or _is_keras(source) or not hasattr(source, "dtype") or tf.as_dtype(source.dtype) != tf.int64:
        return None
    values = np.asarray(source)
    if values.size and not (_INT32[0] <= values.min() and values.max() <= _INT32[1]):
        return None
    narrowed = values.astype(np.int32)
    return ((narrowed, *args[1:]), kwargs) if args else (args, dict(kwargs, **{first: narrowed}))


def _constant_then_tensor(applies: bool, args: tuple, kwargs: dict) -> dict | None:
    """A call as {x, y, ...} when it `applies` (the op is one the caller rewrites), x is a constant and y a
    numeric Keras tensor; else None."""
    if not applies:
        return None
    named = dict(zip(("x", "y"), args), **kwargs)
    if len(args) > 2 or "x" not in named or "y" not in named:
        return None
    if _is_keras(named["x"]) or not _is_keras(named["y"]) or named["y"].dtype.name == "string":
        return None  # strings: add concatenates
    return named


def _is_keras(value) -> bool:
    return hasattr(value, "_keras_history") or type(value).__name__ == "KerasTensor"


def meshgrid(*tensors, indexing: str = "xy"):
    """`tf.meshgrid`'s grids for 1-D integer tensors, from reshapes, multiplies and adds."""
    import tensorflow as tf

    if indexing not in ("xy", "ij"):
        raise ValueError(f"meshgrid: indexing must be 'xy' or 'ij', got {indexing!r}")
    rank = len(tensors)
    # 'xy' swaps the first two output axes (tf.meshgrid's documented Cartesian indexing)
    axes = list(range(rank))
    if indexing == "xy" and rank > 1:
        axes[0], axes[1] = 1, 0
    columns = [tf.reshape(tensor, [-1 if position == axis else 1 for position in range(rank)])
               for tensor, axis in zip(tensors, axes)]
    zeros = columns[0] * 0
    for column in columns[1:]:
        zeros = zeros + column * 0  # the grid's full shape, all zeros
    return [column + zeros for column in columns]
