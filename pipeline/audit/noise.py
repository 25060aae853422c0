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

import numpy as np

# float32's unit roundoff: the relative error of one rounding. It sits with the oracle models the floor is
# measured with (pipeline/model/float64.py: the float64 copy and its perturbed twin), which the runners build.
from pipeline.model.float64 import UNIT_ROUNDOFF
# A floor is never below a few roundings of the output's own scale: on a shallow model PyTorch
# may land within one ULP of the oracle while another correct engine, accumulating in
# another order, lands a few ULPs away.
MIN_ULPS = 16.0
# A candidate passes while its error against the oracle stays within this multiple of the floor.
NOISE_RATIO_BOUND = 10.0
# An absolute floor for outputs near zero, where a relative floor means nothing.
NOISE_ATOL = 1e-7


PERTURBATION_SEEDS = (1, 2)  # two draws of one-rounding perturbations: the spread, not a single lucky draw
# A sample is ill-conditioned when one float32 rounding of the weights and inputs (or PyTorch's own float32
# run) moves the float64 output by more than this fraction of the output's scale: there the output is set
# by rounding (a constant waveform through a per-channel GroupNorm divides rounding noise by sqrt(eps)),
# so no float32 program can be told right or wrong on it. Correct models' samples sit near 1e-6
# (NOISE.md); the wide zoo's wav2vec2 on a constant waveform at 0.12.
ILL_CONDITIONED = 1e-2


def sample_floors(reference_fp32: np.ndarray, oracle: np.ndarray, perturbed_runs: list[np.ndarray],
                  atol: float = 0.0) -> np.ndarray:
    """The noise floor of one output for each input sample (arrays stacked by sample): the largest of
    - the correct float32 program's error against the oracle on that sample;
    - how far the oracle moves when weights and inputs move by one float32 rounding (on an
      ill-conditioned input, a GroupNorm over a near-constant group say, any float32 program's
      rounding grows by the same amount, while one engine may be lucky);
    - MIN_ULPS roundings of the sample's output scale, and atol."""
    truth = np.asarray(oracle, np.float64)
    samples = len(truth)
    if truth.size == 0:
        return np.full(samples, atol)
    spread, scale = _spread(reference_fp32, truth, perturbed_runs)
    return np.maximum.reduce([spread, MIN_ULPS * UNIT_ROUNDOFF * scale, np.full(samples, atol)])


def rounding_spread(reference_fp32: np.ndarray, oracle: np.ndarray, perturbed_runs: list[np.ndarray]) -> np.ndarray:
    """Per sample, how far float32 rounding moves the output, as a fraction of the output's scale: the
    largest of PyTorch float32's error and the perturbed oracles' (0 where the output is all zeros).
    Above ILL_CONDITIONED the sample judges nothing."""
    truth = np.asarray(oracle, np.float64)
    if truth.size == 0:
        return np.zeros(len(truth))
    spread, scale = _spread(reference_fp32, truth, perturbed_runs)
    return np.divide(spread, scale, out=np.zeros_like(spread), where=scale > 0)


def _spread(reference_fp32: np.ndarray, truth: np.ndarray, perturbed_runs: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    samples = len(truth)
    flat = lambda a: np.abs(np.asarray(a, np.float64) - truth).reshape(samples, -1).max(axis=1)  # noqa: E731
    spread = np.maximum.reduce([flat(reference_fp32)] + [flat(run) for run in perturbed_runs])
    return spread, np.abs(truth).reshape(samples, -1).max(axis=1)


def worst_sample(candidate: np.ndarray, oracle: np.ndarray, floors: np.ndarray,
                 judged: np.ndarray | None = None) -> tuple[float, float, float]:
    """A candidate judged sample by sample against each sample's floor: its largest error against the
    oracle, and the floor and noise ratio of its worst sample (the one furthest out in floors). With
    `judged` (a mask), only those samples count, for the error as well; with none judged, the error of
    every sample and no floor or ratio (NaN)."""
    errors = sample_errors(candidate, oracle)
    ratios = np.array([ratio_of(e, f) for e, f in zip(errors, floors)])
    if judged is not None and len(judged) == len(ratios) and not judged.any():
        return error_of(candidate, oracle), float("nan"), float("nan")  # nothing to judge by the floor
    if judged is not None and len(judged) == len(ratios) and not judged.all():
        ratios = np.where(judged, ratios, np.nan)
        error = float(np.max(errors[judged]))
    else:
        error = error_of(candidate, oracle)
    worst = int(np.nanargmax(ratios)) if np.any(np.isfinite(ratios) | np.isinf(ratios)) else 0
    return error, float(floors[worst]), float(ratios[worst])


def sample_errors(candidate: np.ndarray, oracle: np.ndarray) -> np.ndarray:
    """A candidate's largest error against the oracle on each sample (inf for NaN/Inf)."""
    if np.shape(candidate) != np.shape(oracle):
        return np.full(len(oracle), np.inf)
    diff = np.abs(np.asarray(candidate, np.float64) - np.asarray(oracle, np.float64)).reshape(len(oracle), -1)
    if diff.shape[1] == 0:
        return np.zeros(len(oracle))
    return np.where(np.isfinite(diff).all(axis=1), diff.max(axis=1), np.inf)


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
