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


PERTURBATION_SEEDS = (1, 2)  # two draws of one-rounding perturbations: the spread, not a single lucky draw


def perturbed(model64, seed: int):
    """The float64 model as a float32 program would run it, to first order: every floating parameter and
    buffer moved by one float32 rounding, and every leaf module's output by the rounding its own
    accumulation makes (sqrt(fan-in) roundings, random sign: a conv sums in_channels x kernel terms,
    a GroupNorm averages over its group). Where a model amplifies such errors (a norm over a nearly
    constant group, say), its outputs move as much as any correct float32 program's may."""
    import torch

    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for tensor in [*model64.parameters(), *model64.buffers()]:
            if tensor.is_floating_point():
                tensor.mul_(1 + UNIT_ROUNDOFF * _signs(tensor.shape, generator))
    for module in model64.modules():
        if not any(True for _ in module.children()):
            module.register_forward_hook(_rounding_hook(generator))
    return model64


def _signs(shape, generator):
    import torch

    return torch.randint(0, 2, tuple(shape), generator=generator, dtype=torch.float64) * 2 - 1


def _rounding_hook(generator):
    def hook(module, args, output):
        if not hasattr(output, "is_floating_point") or not output.is_floating_point():
            return output
        return output * (1 + UNIT_ROUNDOFF * np.sqrt(_fan_in(module, output)) * _signs(output.shape, generator))
    return hook


def _fan_in(module, output) -> int:
    """How many terms a float32 program sums for each element of this module's output."""
    from torch import nn

    spatial = int(np.prod(output.shape[2:])) if output.dim() > 2 else 1
    if isinstance(module, nn.modules.conv._ConvNd):
        return module.in_channels // module.groups * int(np.prod(module.kernel_size))
    if isinstance(module, nn.Linear):
        return module.in_features
    if isinstance(module, nn.GroupNorm):
        return module.num_channels // module.num_groups * spatial
    if isinstance(module, nn.LayerNorm):
        return int(np.prod(module.normalized_shape))
    if isinstance(module, nn.modules.instancenorm._InstanceNorm):
        return spatial
    if isinstance(module, (nn.modules.pooling._AvgPoolNd, nn.modules.pooling._AdaptiveAvgPoolNd)):
        return max(1, int(np.prod(getattr(module, "kernel_size", 1)))) if isinstance(module, nn.modules.pooling._AvgPoolNd) else spatial
    return 1


def perturb_array(array: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A float input moved by one float32 rounding per element (relative, random sign); others unchanged."""
    if not np.issubdtype(array.dtype, np.floating):
        return array
    return array * (1 + UNIT_ROUNDOFF * rng.choice([-1.0, 1.0], size=array.shape))


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
    flat = lambda a: np.abs(np.asarray(a, np.float64) - truth).reshape(samples, -1).max(axis=1)  # noqa: E731
    spreads = [flat(reference_fp32)] + [flat(run) for run in perturbed_runs]
    scale = np.abs(truth).reshape(samples, -1).max(axis=1)
    return np.maximum.reduce([*spreads, MIN_ULPS * UNIT_ROUNDOFF * scale, np.full(samples, atol)])


def worst_sample(candidate: np.ndarray, oracle: np.ndarray, floors: np.ndarray) -> tuple[float, float, float]:
    """A candidate judged sample by sample against each sample's floor: its largest error against the
    oracle, and the floor and noise ratio of its worst sample (the one furthest out in floors)."""
    errors = sample_errors(candidate, oracle)
    ratios = np.array([ratio_of(e, f) for e, f in zip(errors, floors)])
    worst = int(np.nanargmax(ratios)) if np.any(np.isfinite(ratios) | np.isinf(ratios)) else 0
    return error_of(candidate, oracle), float(floors[worst]), float(ratios[worst])


def sample_errors(candidate: np.ndarray, oracle: np.ndarray) -> np.ndarray:
    """A candidate's largest error against the oracle on each sample (inf for NaN/Inf)."""
    if np.shape(candidate) != np.shape(oracle):
        return np.full(len(oracle), np.inf)
    diff = np.abs(np.asarray(candidate, np.float64) - np.asarray(oracle, np.float64)).reshape(len(oracle), -1)
    if diff.shape[1] == 0:
        return np.zeros(len(oracle))
    return np.where(np.isfinite(diff).all(axis=1), diff.max(axis=1), np.inf)


def to_float64(array: np.ndarray) -> np.ndarray:
    """Float inputs become float64; integer and boolean inputs are passed through unchanged."""
    return array.astype(np.float64) if np.issubdtype(array.dtype, np.floating) else array


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
