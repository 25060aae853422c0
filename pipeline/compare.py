"""Running and comparing, kept apart.

`run_all` runs runners on shared feeds and returns RunResults (arrays per backend
and output, samples stacked on a leading axis). `compare` turns saved or fresh
RunResults into typed Comparison records; it never runs a model.

Pass rule, per element, as np.allclose: |candidate - reference| <= atol + rtol * |reference|.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Callable

import numpy as np

from pipeline.inputs import Feed, stack
from pipeline.runners.base import Runner

RunResults = dict[str, dict[str, np.ndarray]]


@dataclass(frozen=True)
class Tolerance:
    atol: float
    rtol: float


# Why these defaults:
# - fp32 backends compute the same float32 math in another order (fused kernels,
#   oneDNN, XNNPACK); differences are a few ULPs per op, ~1e-6 on O(1) outputs,
#   so 1e-4 leaves room for depth while a real bug (wrong eps: 1e-2..1e-1) fails.
# - TFLite fp16 stores weights in float16 (relative rounding 2^-11 ~ 4.9e-4 per
#   weight); the error grows with depth, so it gets 1e-2 absolute and relative.
DEFAULT_TOLERANCES = {"fp32": Tolerance(1e-4, 1e-4), "fp16": Tolerance(1e-2, 1e-2)}
PRECISION = {"pytorch": "fp32", "onnxruntime": "fp32", "tf_saved_model": "fp32", "keras": "fp32",
             "tflite_fp32": "fp32", "tflite_fp16": "fp16"}


def tolerance_for(backend: str, overrides: dict[str, Tolerance] | None = None) -> Tolerance:
    """Override by backend name first, then by precision ('fp32'/'fp16'), then the default."""
    overrides = overrides or {}
    precision = PRECISION.get(backend, "fp32")
    return overrides.get(backend) or overrides.get(precision) or DEFAULT_TOLERANCES[precision]


@dataclass(frozen=True)
class Comparison:
    reference: str
    candidate: str
    output: str
    max_abs: float
    mean_abs: float
    max_rel: float  # max |diff| / |ref| over elements with |ref| > atol
    cosine: float
    ref_max_abs: float  # scale of the reference output
    fraction_beyond_tol: float
    atol: float
    rtol: float
    passed: bool
    error: str | None = None

    def __bool__(self) -> bool:
        return self.passed

    def to_json(self) -> dict:
        return asdict(self)


def run_all(runners: list[Runner], feeds: list[Feed], on_sample: Callable[[str, int], None] | None = None) -> RunResults:
    """Run each runner on every feed; returns backend -> output -> stacked array."""
    results: RunResults = {}
    for runner in runners:
        with runner:
            per_sample = []
            for index, feed in enumerate(feeds):
                per_sample.append(runner.infer(feed))
                if on_sample:
                    on_sample(runner.name, index)
        results[runner.name] = stack(per_sample)
    return results


def compare(results: RunResults, reference: str, candidates: list[str], overrides: dict[str, Tolerance] | None = None) -> list[Comparison]:
    """Compare each candidate's outputs with the reference's, output by output."""
    comparisons = []
    for candidate in candidates:
        tolerance = tolerance_for(candidate, overrides)
        for output, ref in results[reference].items():
            comparisons.append(compare_arrays(ref, results[candidate].get(output), tolerance, (reference, candidate, output)))
    return comparisons


def compare_arrays(ref: np.ndarray, cand: np.ndarray | None, tol: Tolerance, names: tuple[str, str, str]) -> Comparison:
    problem = _structural_problem(ref, cand)
    if problem:
        return Comparison(*names, *(float("nan"),) * 6, tol.atol, tol.rtol, False, problem)
    ref64, cand64 = ref.astype(np.float64), cand.astype(np.float64)
    diff = np.abs(cand64 - ref64)
    allowed = tol.atol + tol.rtol * np.abs(ref64)
    beyond = float(np.mean(diff > allowed)) if diff.size else 0.0
    return Comparison(
        *names, max_abs=_max(diff), mean_abs=float(diff.mean()) if diff.size else 0.0,
        max_rel=_max_rel(diff, ref64, tol.atol), cosine=_cosine(ref64, cand64), ref_max_abs=_max(np.abs(ref64)),
        fraction_beyond_tol=beyond, atol=tol.atol, rtol=tol.rtol, passed=beyond == 0.0,
    )


def _structural_problem(ref: np.ndarray, cand: np.ndarray | None) -> str | None:
    if cand is None:
        return "candidate has no such output"
    if ref.shape != cand.shape:
        return f"shape mismatch: reference {list(ref.shape[1:])}, candidate {list(cand.shape[1:])}"
    if not np.all(np.isfinite(ref)):
        return "reference output holds NaN or Inf"
    if not np.all(np.isfinite(cand)):
        return "candidate output holds NaN or Inf"
    return None


def _max(values: np.ndarray) -> float:
    return float(values.max()) if values.size else 0.0


def _max_rel(diff: np.ndarray, ref: np.ndarray, atol: float) -> float:
    mask = np.abs(ref) > atol
    return float((diff[mask] / np.abs(ref[mask])).max()) if mask.any() else 0.0


def _cosine(a: np.ndarray, b: np.ndarray) -> float:
    na, nb = np.linalg.norm(a), np.linalg.norm(b)
    if na == 0 and nb == 0:
        return 1.0
    if na == 0 or nb == 0:
        return 0.0
    return float(np.dot(a.ravel(), b.ravel()) / (na * nb))
