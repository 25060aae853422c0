"""The float32 noise floor: how far two correct float32 programs may differ, measured, not assumed.

A float64 copy of the model (the oracle) gives the answer float32 is trying to reach. The
floor of an output is how far a known-correct float32 program lands from the oracle: the
PyTorch model itself, run in float32. A candidate is judged by its own distance from the
oracle as a multiple of that floor (its noise ratio): a correct conversion lands about as
close as PyTorch does, a wrong epsilon or padding lands orders of magnitude further.

The floor is never derived from the candidates, so a wrong engine cannot widen its own
tolerance. Measurements behind NOISE_RATIO_BOUND: README ("Verdicts") and NOISE.md.
"""
from __future__ import annotations

import copy

import numpy as np

# float32's unit roundoff: the relative error of one rounding.
UNIT_ROUNDOFF = float(np.finfo(np.float32).eps) / 2
# A floor is never below a few roundings of the output's own scale: on a shallow model PyTorch
# may land within one ULP of the oracle while another correct engine, accumulating in
# another order, lands a few ULPs away.
MIN_ULPS = 16.0
# A candidate passes while its error against the oracle stays within this multiple of the floor.
NOISE_RATIO_BOUND = 10.0
# An absolute floor for outputs near zero, where a relative floor means nothing.
NOISE_ATOL = 1e-7


def float64_copy(model):
    """A float64 copy of a PyTorch model (the oracle); the original is left untouched."""
    return copy.deepcopy(model).double().eval()


def to_float64(array: np.ndarray) -> np.ndarray:
    """Float inputs become float64; integer and boolean inputs are passed through unchanged."""
    return array.astype(np.float64) if np.issubdtype(array.dtype, np.floating) else array


def floor_of(reference_fp32: np.ndarray, oracle: np.ndarray, atol: float = 0.0) -> float:
    """The noise floor of one output (stacked by sample): the correct float32 program's largest
    error against the oracle, at least MIN_ULPS roundings of the output's scale, and at least atol."""
    ref, truth = np.asarray(reference_fp32, np.float64), np.asarray(oracle, np.float64)
    if ref.shape != truth.shape or truth.size == 0:
        return float("nan")
    measured = float(np.max(np.abs(ref - truth)))
    scale = float(np.max(np.abs(truth)))
    return max(measured, MIN_ULPS * UNIT_ROUNDOFF * scale, atol)


def error_of(candidate: np.ndarray, oracle: np.ndarray) -> float:
    """A candidate's largest error against the oracle (inf for a shape mismatch or NaN/Inf)."""
    cand, truth = np.asarray(candidate, np.float64), np.asarray(oracle, np.float64)
    if cand.shape != truth.shape:
        return float("inf")
    diff = np.abs(cand - truth)
    return float(np.max(diff)) if diff.size and np.all(np.isfinite(diff)) else (0.0 if diff.size == 0 else float("inf"))


def ratio_of(error: float, floor: float) -> float:
    """How many noise floors an error is."""
    if not np.isfinite(floor) or floor <= 0:
        return float("nan")
    return error / floor
