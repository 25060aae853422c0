"""onnx2tf 1.x's Einsum transpose search, screened with numpy first: the same choice, far fewer Keras models.

In strict mode (its default), onnx2tf checks an Einsum of two static inputs against ONNX Runtime's output by
trying every pair of permutations of the two inputs' axes, in `itertools.permutations` order, outer loop over
the first input's: for each pair it builds a Keras model `einsum(transpose(a, p1), transpose(b, p2))`, skips
it when it raises or when its output has another number of elements than ONNX's, runs it on the tensors
its graph gives there, and compares it with ONNX Runtime's tensor (`onnx_tf_tensor_validation`, rtol and
atol 0). It keeps the pair with the smallest error (the first of equal ones) and stops at the first whose
error is below 1e-3. Where none comes below it (behind a layer it converted wrong, or where activations are
large enough that float32 rounding alone exceeds 1e-3), it tries them all: 576 pairs for two rank-4
inputs, each a Keras graph (tf.einsum refuses most of them while the graph is built, and that building is
where the time goes). A tiny CvT's 1.x graph has 12 such searches: 76.9 s to build, 16.2 s with this
screen, the same graph and the same output bit for bit (one measurement each).

Unlike a transpose, an einsum does arithmetic, so numpy's numbers are not TensorFlow's, bit for bit. But how
far they can be apart is known: a float32 sum of K products differs from the exact sum by at most
gamma_K * sum |a_k b_k| (gamma_K = K u / (1 - K u), u = 2**-24), in any order of summation (Higham, Accuracy
and Stability of Numerical Algorithms, 3.1), plus less than the smallest normal float32 for each product
or sum TensorFlow flushes to zero as subnormal. numpy's float64 einsum is exact to far better than that. So for
every pair numpy gives an interval [low, high] that holds onnx2tf's error for it (its comparison is a
smallest-over-layouts largest absolute difference, which moves by at most the largest change of the
tensor, and its float32 subtraction by at most a relative u). A pair whose `low` is at least 1e-3 cannot
stop the search, and one whose `low` is above the smallest `high` cannot be kept. Every other pair, and
every pair numpy cannot judge, stays; TensorFlow refuses a pair whose labels disagree in size (numpy
broadcasts a size 1 there), so such a pair is dropped, as onnx2tf's loop skips it.

onnx2tf's loop then runs on what stays, in its own order: `itertools.permutations` in its Einsum module
gives the permutations of the first input that some staying pair has, then those of the second. Their
product holds every staying pair (and possibly some that were screened out, which cannot change the
choice), so the loop builds its Keras models on TensorFlow's own numbers and keeps the pair the full search
keeps (tests/converters/test_onnx2tf_v1_einsum.py). Only tf_keras's automatic layer names differ.

Anywhere else (an equation with '...' or without '->', inputs that are not float32, a non-finite value, no
ONNX tensor to compare with, a symbolic shape, more than LARGEST_SCREENED elements, a subnormal input,
which TensorFlow reads as zero), with a GPU (whose float32 einsum may round as TF32), where the screen
itself fails (a note in the conversion log), or with an onnx2tf whose loop was not checked against this
(CHECKED_VERSIONS), `itertools.permutations` is itself and the full search runs.
"""
from __future__ import annotations

import contextlib
import itertools
import math
import sys
from dataclasses import dataclass
from typing import Callable, Iterable, Iterator

import numpy as np

from pipeline.converters.onnx2tf_v1_reshape import CHECKED_VERSIONS, EARLY_STOP, onnx2tf_version
from pipeline.errors import first_line
from pipeline.patching import Overlay, optional_module, replaced

UNIT_ROUNDOFF = {np.dtype(np.float32): 2.0 ** -24, np.dtype(np.float64): 2.0 ** -53}
FLOAT32_TINY, FLOAT32_MAX = float(np.finfo(np.float32).tiny), float(np.finfo(np.float32).max)
LARGEST_SCREENED = 2 ** 24  # elements of an input or the output (128 MB in float64); a larger search runs whole


@contextlib.contextmanager
def einsum_search_screened() -> Iterator[None]:
    """During onnx2tf's convert(): its Einsum transpose search screened with numpy (see the module docstring)."""
    module = optional_module("onnx2tf.ops.Einsum")
    if module is None or getattr(module, "itertools", None) is not itertools or onnx2tf_version() not in CHECKED_VERSIONS:
        yield
        return
    import tensorflow as tf

    if tf.config.list_physical_devices("GPU"):  # a GPU may sum float32 products in TF32: the bound does not hold
        yield
        return
    with replaced(module, "itertools", Overlay(itertools, permutations=_permutations())):
        yield


@dataclass(frozen=True)
class Search:
    """What onnx2tf's Einsum search compares: the equation, the two tensors its graph gives there, ONNX
    Runtime's output and the element count onnx2tf checks a candidate's output against."""

    equation: str
    first: np.ndarray
    second: np.ndarray
    expected: np.ndarray
    onnx_size: int


def _permutations() -> Callable:
    """itertools.permutations, which inside onnx2tf's Einsum search gives only the permutations of each input
    that some pair left by the screen has (the first call decides both; the second gives the second's)."""
    pending: list[list[tuple]] = []

    def permutations(iterable: Iterable, r: int | None = None) -> Iterator[tuple]:
        axes = tuple(iterable)
        frame = sys._getframe(1).f_locals
        if "tensor_1_candidate_for_transpositions" in frame:  # the second input's, in the same search
            return iter(pending.pop()) if pending and r is None else itertools.permutations(axes, r)
        pending.clear()
        search = _search(frame, axes) if r is None else None
        if search is None:
            return itertools.permutations(axes, r)
        try:
            firsts, seconds = kept_permutations(search)
        except Exception as exc:  # noqa: BLE001 (a speed-up never fails a conversion: the full search decides)
            print(f"onnx2tf Einsum '{search.equation}': the numpy screen failed ({type(exc).__name__}: {first_line(exc, 200)}); "
                  "every pair is tried", file=sys.stderr)
            return itertools.permutations(axes, r)
        pending.append(seconds)
        return iter(firsts)

    return permutations


def _search(frame: dict, axes: tuple) -> Search | None:
    """The search's tensors from onnx2tf's make_node frame, at the first input's permutations; None where
    this is not that search or the screen cannot bound its errors."""
    first, second = frame.get("validation_data_1"), frame.get("validation_data_2")
    equation, onnx_tensors, shape = frame.get("equation"), frame.get("onnx_tensor_infos"), frame.get("onnx_output_shape")
    if not isinstance(first, np.ndarray) or not isinstance(second, np.ndarray) or axes != tuple(range(first.ndim)):
        return None
    if not isinstance(equation, str) or not isinstance(onnx_tensors, dict):
        return None
    equation = equation.replace(" ", "")
    if not _plain(equation):
        return None
    if len(onnx_tensors) != 1 or not isinstance(shape, (list, tuple)):
        return None
    expected = next(iter(onnx_tensors.values()))
    if not isinstance(expected, np.ndarray) or {first.dtype, second.dtype, expected.dtype} != {np.dtype(np.float32)}:
        return None
    if max(first.size, second.size, expected.size) > LARGEST_SCREENED:
        return None  # float64 copies of its pairs would hold more memory than TensorFlow's own search does
    if not all(np.isfinite(a).all() for a in (first, second, expected)):
        return None
    if any(((a != 0) & (np.abs(a) < FLOAT32_TINY)).any() for a in (first, second)):
        return None  # TensorFlow reads a subnormal input as zero; times a large value, that is no rounding error
    if not all(isinstance(d, (str, int, np.integer)) and not isinstance(d, bool) for d in shape):
        return None  # onnx2tf's own element count would raise on it
    size = math.prod(-1 if isinstance(d, str) else int(d) for d in shape)  # onnx2tf counts a symbolic axis as -1
    return Search(equation, first, second, expected, size)


def _plain(equation: str) -> bool:
    """Two operands and an explicit output, one letter per axis, no '...' and no label twice in an operand
    (a diagonal): the equations whose sizes and sums this screen reads as TensorFlow does."""
    inputs, arrow, output = equation.partition("->")
    operands = inputs.split(",")
    return bool(arrow) and len(operands) == 2 and all(
        label.isalpha() and len(set(label)) == len(label) for label in [*operands, output] if label)


@dataclass(frozen=True)
class Candidate:
    first: tuple[int, ...]
    second: tuple[int, ...]
    low: float  # onnx2tf's error for this pair is in [low, high]; an unjudged pair has [0, inf]
    high: float


def kept_permutations(search: Search) -> tuple[list[tuple], list[tuple]]:
    """The first input's permutations, then the second's, that some pair left by the screen has, each in
    `itertools.permutations` order."""
    candidates = []
    for candidate in filter(None, _candidates(search)):
        candidates.append(candidate)
        if candidate.high < EARLY_STOP:  # the search stops here at the latest: no pair after it runs
            break
    kept = _kept(candidates)
    firsts = {c.first for c in kept}
    seconds = {c.second for c in kept}
    return ([p for p in itertools.permutations(range(search.first.ndim)) if p in firsts],
            [p for p in itertools.permutations(range(search.second.ndim)) if p in seconds])


def _kept(candidates: list[Candidate]) -> list[Candidate]:
    """The pairs that may stop onnx2tf's search or be the one it keeps."""
    stop = next((i for i, c in enumerate(candidates) if c.high < EARLY_STOP), None)
    if stop is not None:  # the search stops there at the latest, on the first pair below EARLY_STOP
        return [c for c in candidates[:stop + 1] if c.low < EARLY_STOP]
    best = min((c.high for c in candidates), default=math.inf)
    return [c for c in candidates if c.low < EARLY_STOP or c.low <= best]


def _candidates(search: Search) -> Iterator[Candidate | None]:
    """Each pair in onnx2tf's order: its error interval, or None where TensorFlow refuses it or its output
    has another element count than ONNX's (onnx2tf's loop skips both)."""
    inputs, output = search.equation.split("->")
    labels = inputs.split(",")
    expected = search.expected.astype(np.float64)
    first, second = search.first.astype(np.float64), search.second.astype(np.float64)  # once, not per pair
    for p1 in itertools.permutations(range(first.ndim)):
        a = np.transpose(first, p1)
        for p2 in itertools.permutations(range(second.ndim)):
            yield _judged(search, labels, output, a, np.transpose(second, p2), expected, p1, p2)


def _judged(search: Search, labels: list[str], output: str, a: np.ndarray, b: np.ndarray, expected: np.ndarray,
            p1: tuple, p2: tuple) -> Candidate | None:
    """One pair's interval; `a` and `b` are its transposed inputs in float64."""
    sizes = _label_sizes(labels, (a.shape, b.shape))
    if sizes is None:
        return None  # TensorFlow raises where labels disagree in size; numpy would broadcast a size 1
    if any(label not in sizes for label in output) or math.prod(sizes[label] for label in output) != search.onnx_size:
        return None
    try:
        exact = np.einsum(search.equation, a, b, optimize=True)
        magnitude = np.einsum(search.equation, np.abs(a), np.abs(b), optimize=True)
    except ValueError:  # numpy refuses what TensorFlow may take: left to onnx2tf's loop
        return Candidate(p1, p2, 0.0, math.inf)
    terms = math.prod(size for label, size in sizes.items() if label not in output)
    largest = float(magnitude.max(initial=0.0))
    # rounding (Higham), and TensorFlow's flush of subnormal products and sums to zero: less than the smallest
    # normal float32 each, at most 2 * terms of them per element
    spread = (_gamma(terms, np.float32) + _gamma(terms, np.float64)) * largest + 2 * terms * FLOAT32_TINY
    error = _layout_error(expected, exact)
    if error is None or not math.isfinite(spread) or largest * (1 + _gamma(terms, np.float32)) >= FLOAT32_MAX:
        return Candidate(p1, p2, 0.0, math.inf)  # float32 may overflow there, or the bound says nothing
    u = UNIT_ROUNDOFF[np.dtype(np.float32)]
    slack = 1e-12 * (error + spread) + 1e-30
    return Candidate(p1, p2, max(0.0, (error - spread) * (1 - u) - slack), (error + spread) * (1 + u) + slack)


def _label_sizes(labels: list[str], shapes: tuple) -> dict[str, int] | None:
    sizes: dict[str, int] = {}
    for label_set, shape in zip(labels, shapes):
        if len(label_set) != len(shape):
            return None
        for label, size in zip(label_set, shape):
            if sizes.setdefault(label, size) != size:
                return None
    return sizes


def _gamma(terms: int, dtype) -> float:
    """Higham's gamma_n: the relative bound of a sum of n products in that precision, in any order."""
    nu = terms * UNIT_ROUNDOFF[np.dtype(dtype)]
    return math.inf if nu >= 1 else nu / (1 - nu)


def _layout_error(expected: np.ndarray, exact: np.ndarray) -> float | None:
    """onnx2tf's comparison (onnx_tf_tensor_validation, rtol and atol 0) of ONNX Runtime's tensor with `exact`,
    in float64: the smallest, over the transposes of `exact` that have ONNX's shape, of the largest absolute
    difference. None where it is not such a difference (no transpose fits, or a scalar or vector, where
    onnx2tf takes 0 or a fixed large value: this screen then leaves the pair to the loop)."""
    if expected.ndim <= 1 or exact.ndim <= 1:
        return None
    errors = [float(np.max(np.abs(expected - exact.transpose(perm)), initial=0.0))
              for perm in itertools.permutations(range(exact.ndim)) if exact.transpose(perm).shape == expected.shape]
    return min(errors) if errors else None
