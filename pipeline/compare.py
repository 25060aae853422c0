"""Running and comparing, kept apart.

`run_all` runs runners on shared feeds and returns RunResults (arrays per backend
and output, samples stacked on a leading axis). `compare` turns saved or fresh
RunResults into typed Comparison records; it never runs a model.

Pass rule, per element, as np.allclose: |candidate - reference| <= atol + rtol * |reference|.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Callable

import numpy as np

from pipeline import profile
from pipeline.inputs import Feed, stack
from pipeline.names import PRECISION
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
# These decide only where no float64 oracle is available (the ONNX route) or where the config
# sets `tolerances`; otherwise the noise floor does (pipeline/audit/judge.py).
# - TFLite int8 rounds activations to 256 levels per tensor (a step of ~0.4% of each
#   tensor's range) and the error adds up with depth; this allclose tolerance is its
#   fallback and what `verify` reproduces: its verdict is its precision budget (SNR, top-k).
DEFAULT_TOLERANCES = {"fp32": Tolerance(1e-4, 1e-4), "fp16": Tolerance(1e-2, 1e-2), "fp64": Tolerance(1e-4, 1e-4),
                      "int8": Tolerance(1e-1, 1e-1)}


@dataclass(frozen=True)
class PrecisionBudget:
    """What a user accepts to pay for a lower precision (the config's `precision_budget`)."""

    min_snr_db: float | None = None
    min_top1: float | None = None
    min_top5: float | None = None


# fp16 stores weights with 11 significant bits (relative rounding 4.9e-4); 30 dB means an
# error of about 3% of the signal's RMS, far above what fp16 costs a healthy model and below
# what a broken one shows. Top-1/top-5 are reported; a config can budget them too.
DEFAULT_BUDGETS = {"fp16": PrecisionBudget(min_snr_db=30.0), "int8": PrecisionBudget(min_snr_db=15.0)}
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
    rel_to_scale: float | None = None  # max_abs / ref_max_abs
    p50_abs: float | None = None
    p90_abs: float | None = None
    p99_abs: float | None = None
    snr_db: float | None = None  # 10*log10(sum ref^2 / sum diff^2); inf when identical
    top1_agreement: float | None = None  # classification-like outputs only
    top5_agreement: float | None = None  # reference top-1 within candidate's top-5
    histogram: dict | None = None  # {"edges", "counts", "zeros"} of |candidate - reference|
    verdict: str = "pass"  # "pass" | "fail" | "inconclusive"
    reason: str | None = None  # why it failed or is inconclusive
    oracle_error: float | None = None  # max |candidate - float64 oracle|
    noise_floor: float | None = None  # how far a correct float32 program lands from the oracle
    noise_ratio: float | None = None  # oracle_error / noise_floor
    rule: str = "tolerance"  # what decided: "noise floor", "fp16 storage floor", "precision budget", "tolerance", "tolerance (config)"
    warning: str | None = None  # a lower precision's cost over the default budget: shown, not failed
    # fp16/int8: SNR and top-k on the in-distribution samples (also in snr_db/top*_agreement), against
    # TFLite fp32 (`vs_tflite_fp32`), and each edge case's SNR apart (`edge_cases_snr_db`)
    precision_cost: dict | None = None
    # Dynamic models: the sizes of the dynamic dimensions this comparison ran at ({} the example shape)
    shape: dict | None = None

    def __bool__(self) -> bool:
        return self.passed

    def to_json(self) -> dict:
        # `shape` only where the model has dynamic dimensions, so static records keep their keys
        return {k: v for k, v in asdict(self).items() if k != "histogram" and (k != "shape" or v is not None)}

    @classmethod
    def from_json(cls, raw: dict) -> "Comparison":
        """Strict JSON wrote undefined numbers (NaN) as null; they come back as NaN."""
        names = {f.name for f in fields(cls)}
        nan_fields = {"max_abs", "mean_abs", "max_rel", "cosine", "ref_max_abs", "fraction_beyond_tol"}
        return cls(**{k: (float("nan") if v is None and k in nan_fields else v) for k, v in raw.items() if k in names})


def run_all(runners: list[Runner], feeds: list[Feed], on_sample: Callable[[str, int], None] | None = None) -> RunResults:
    """Run each runner on every feed; returns backend -> output -> stacked array."""
    results, broken = run_sets(runners, [feeds], on_sample, keep_going=False)
    return results[0]


def run_each(runners: list[Runner], feeds: list[Feed], reference: str,
             on_sample: Callable[[str, int], None] | None = None) -> tuple[RunResults, dict[str, str]]:
    """run_all, runner by runner: one that cannot run (say, TFLite with Select TF ops and no Flex delegate)
    is recorded with why, and the others still run; the reference's failure is raised."""
    results, broken = run_sets(runners, [feeds], on_sample, reference=reference)
    if reference in broken[0]:
        from pipeline.errors import RunnerError

        raise RunnerError(broken[0][reference])
    return results[0], broken[0]


def run_sets(runners: list[Runner], sets: list[list[Feed]], on_sample: Callable[[str, int], None] | None = None,
             keep_going: bool = True, reference: str | None = None) -> tuple[list[RunResults], list[dict[str, str]]]:
    """Each runner loaded once and run on every feed of every input set (a dynamic model's shapes, each its
    own set): per set, backend -> output -> stacked array, and each runner that could not load or run there,
    with why. `keep_going=False` raises a runner's first error instead. When the `reference` runner cannot
    run on a set, nothing more runs: no candidate can be compared without it (the caller says where)."""
    from pipeline.errors import RunnerError

    results: list[RunResults] = [{} for _ in sets]
    broken: list[dict[str, str]] = [{} for _ in sets]
    if not sets:  # nothing to run: no runner is loaded (a static model's reused backends)
        return results, broken
    for runner in runners:
        try:
            with profile.step(f"backend {runner.name}: load"):
                runner.activate()
        except RunnerError as exc:
            if not keep_going:
                raise
            for where in broken:
                where[runner.name] = str(exc)
            if runner.name == reference:
                break
            continue
        try:
            for index, feeds in enumerate(sets):
                try:
                    results[index][runner.name] = _run_set(runner, feeds, on_sample)
                except RunnerError as exc:
                    if not keep_going:
                        raise
                    broken[index][runner.name] = str(exc)
                    if runner.name == reference:
                        return results, broken
        finally:
            runner.deactivate()
    return results, broken


def _run_set(runner: Runner, feeds: list[Feed], on_sample: Callable[[str, int], None] | None) -> dict[str, np.ndarray]:
    with profile.step(f"backend {runner.name}: run {len(feeds)} samples"):
        per_sample = []
        for index, feed in enumerate(feeds):
            per_sample.append(runner.infer(feed))
            if on_sample:
                on_sample(runner.name, index)
    return stack(per_sample)


def compare(
    results: RunResults, reference: str, candidates: list[str], overrides: dict[str, Tolerance] | None = None,
    classification: set[str] | None = None,
) -> list[Comparison]:
    """Compare each candidate's outputs with the reference's, output by output.

    `classification` names outputs treated as class logits (top-1/top-5 agreement);
    None means auto: outputs shaped (batch, classes) with at least 2 classes."""
    comparisons = []
    for candidate in candidates:
        tolerance = tolerance_for(candidate, overrides)
        for output, ref in results[reference].items():
            is_logits = _is_logits(ref) if classification is None else output in classification
            comparisons.append(compare_arrays(ref, results[candidate].get(output), tolerance, (reference, candidate, output), is_logits))
    return comparisons


def compare_arrays(ref: np.ndarray, cand: np.ndarray | None, tol: Tolerance, names: tuple[str, str, str], logits: bool = False) -> Comparison:
    problem = _structural_problem(ref, cand)
    if problem:
        verdict = "inconclusive" if problem.startswith("reference") else "fail"
        return Comparison(*names, *(float("nan"),) * 6, tol.atol, tol.rtol, False, problem, verdict=verdict, reason=problem)
    ref64, cand64 = ref.astype(np.float64), cand.astype(np.float64)
    diff = np.abs(cand64 - ref64)
    allowed = tol.atol + tol.rtol * np.abs(ref64)
    beyond = float(np.mean(diff > allowed)) if diff.size else 0.0
    scale = _max(np.abs(ref64))
    p50, p90, p99 = (float(v) for v in np.percentile(diff, [50, 90, 99])) if diff.size else (0.0, 0.0, 0.0)
    top1, top5 = _topk_agreement(ref64, cand64) if logits else (None, None)
    verdict, reason = _verdict(beyond, ref, tol)
    return Comparison(
        *names, max_abs=_max(diff), mean_abs=float(diff.mean()) if diff.size else 0.0,
        max_rel=_max_rel(diff, ref64, tol.atol), cosine=_cosine(ref64, cand64), ref_max_abs=scale,
        fraction_beyond_tol=beyond, atol=tol.atol, rtol=tol.rtol, passed=verdict == "pass", verdict=verdict, reason=reason,
        rel_to_scale=_max(diff) / scale if scale > 0 else None, p50_abs=p50, p90_abs=p90, p99_abs=p99,
        snr_db=_snr_db(ref64, diff), top1_agreement=top1, top5_agreement=top5, histogram=_histogram(diff),
    )


def snr_and_topk(ref: np.ndarray, cand: np.ndarray, logits: bool = False) -> dict:
    """compare_arrays' SNR and top-1/top-5 agreement alone, the same numbers (None where it records none): what a
    lower precision's cost needs several times per comparison, without the percentiles, histogram and cosine."""
    if _structural_problem(ref, cand):
        return {"snr_db": None, "top1_agreement": None, "top5_agreement": None}
    ref64, cand64 = ref.astype(np.float64), cand.astype(np.float64)
    top1, top5 = _topk_agreement(ref64, cand64) if logits else (None, None)
    return {"snr_db": _snr_db(ref64, np.abs(cand64 - ref64)), "top1_agreement": top1, "top5_agreement": top5}


def not_run(reference: str, candidate: str, output: str, tol: Tolerance, reason: str) -> Comparison:
    """A candidate whose model could not be loaded or run: that artifact is not shippable as is."""
    return Comparison(reference, candidate, output, *(float("nan"),) * 6, tol.atol, tol.rtol, False, reason,
                      verdict="fail", reason=f"could not run: {reason}")


def _verdict(beyond: float, ref: np.ndarray, tol: Tolerance) -> tuple[str, str | None]:
    """A disagreement beyond tolerance fails; agreement counts only when the reference carries signal."""
    if beyond > 0:
        return "fail", f"{beyond:.2%} of elements beyond atol + rtol*|reference|"
    weak = evidence_problem(ref, tol)
    return ("inconclusive", weak) if weak else ("pass", None)


# Rules for "no evidence" (documented in the README):
# - the reference's largest magnitude is at most atol: an all-zero candidate would pass;
# - it is below 1e3 times the smallest normal number of its dtype (float32: 1.2e-35);
# - over two or more distinct input samples, no output element moves by more than
#   1e-6 of the output's scale: the inputs never reach the output.
SAMPLE_SPREAD_RTOL = 1e-6


def evidence_problem(ref: np.ndarray, tol: Tolerance) -> str | None:
    """Why agreement with this reference output would prove nothing, or None. `ref` is stacked by sample."""
    if ref.size == 0:
        return "the reference output is empty"
    if not np.issubdtype(ref.dtype, np.floating):
        return None
    scale = float(np.max(np.abs(ref)))
    floor = 1e3 * float(np.finfo(ref.dtype).tiny)
    if scale < floor:
        return f"the reference output's magnitude {scale:.3g} is below what {ref.dtype} can represent meaningfully ({floor:.2g})"
    if scale <= tol.atol:
        return (f"the reference output's largest magnitude {scale:.3g} is within atol={tol.atol:g}: an all-zero output "
                "would pass; lower the tolerance or check that activations do not vanish")
    if len(ref) >= 2:
        spread = float(np.max(np.abs(ref.astype(np.float64) - ref[:1].astype(np.float64))))
        if spread <= SAMPLE_SPREAD_RTOL * scale:
            return (f"the output is the same for all {len(ref)} input samples (largest change {spread:.3g}): "
                    "the inputs never reach it, so agreement tests nothing")
    return None


def overall_verdict(verdicts: list[str]) -> str:
    """fail beats inconclusive beats pass."""
    if "fail" in verdicts:
        return "fail"
    return "inconclusive" if "inconclusive" in verdicts else "pass"


HISTOGRAM_EDGES = np.logspace(-12, 2, 29)


def _histogram(diff: np.ndarray) -> dict:
    nonzero = diff[diff > 0]
    clipped = np.clip(nonzero, HISTOGRAM_EDGES[0], HISTOGRAM_EDGES[-1])
    counts, _ = np.histogram(clipped, bins=HISTOGRAM_EDGES)
    return {"edges": HISTOGRAM_EDGES.tolist(), "counts": counts.tolist(), "zeros": int(diff.size - nonzero.size)}


def _snr_db(ref: np.ndarray, diff: np.ndarray) -> float:
    signal, noise = float(np.sum(ref ** 2)), float(np.sum(diff ** 2))
    if noise == 0:
        return float("inf")
    return 10 * np.log10(signal / noise) if signal > 0 else float("-inf")


def _is_logits(ref: np.ndarray) -> bool:
    # Stacked per sample: (samples, batch, classes).
    return ref.ndim == 3 and ref.shape[-1] >= 2 and np.issubdtype(ref.dtype, np.floating)


def _topk_agreement(ref: np.ndarray, cand: np.ndarray) -> tuple[float, float]:
    ref_rows, cand_rows = ref.reshape(-1, ref.shape[-1]), cand.reshape(-1, cand.shape[-1])
    ref_top1 = ref_rows.argmax(axis=1)
    top1 = float(np.mean(ref_top1 == cand_rows.argmax(axis=1)))
    k = min(5, ref_rows.shape[1])
    cand_top5 = np.argsort(-cand_rows, axis=1)[:, :k]
    top5 = float(np.mean([label in row for label, row in zip(ref_top1, cand_top5)]))
    return top1, top5


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
    # numpy's own pairwise sums, not BLAS (np.dot, np.linalg.norm): the same digits whatever BLAS's thread count,
    # and no BLAS threads waking beside TensorFlow's (15 comparisons took 0.8 s of a 3-shape audit through BLAS).
    a, b = a.ravel(), b.ravel()
    na, nb = float(np.sqrt(np.sum(a * a))), float(np.sqrt(np.sum(b * b)))
    if na == 0 and nb == 0:
        return 1.0
    if na == 0 or nb == 0:
        return 0.0
    return float(np.sum(a * b) / (na * nb))


# What a lower precision costs, for the int8 measurements (convert/int8_step.py) and the manifest (deploy/int8.py).
def metrics(ref: np.ndarray, cand: np.ndarray) -> dict:
    """max/mean absolute error, SNR (dB) and top-1/top-5 agreement of `cand` against `ref` (stacked by sample)."""
    ref64, cand64 = ref.astype(np.float64), cand.astype(np.float64)
    diff = np.abs(cand64 - ref64)
    noise = float(np.sum(diff ** 2))
    snr = float("inf") if noise == 0 else float(10 * np.log10(float(np.sum(ref64 ** 2)) / noise))
    top1, top5 = agreement(ref64, cand64)
    return {"max_abs": float(diff.max()), "mean_abs": float(diff.mean()), "snr_db": snr,
            "top1_agreement": top1, "top5_agreement": top5}


def agreement(ref: np.ndarray, cand: np.ndarray) -> tuple[float | None, float | None]:
    """Top-1 and top-5 agreement over the class axis; None for outputs with no such axis."""
    if ref.ndim < 3 or ref.shape[2] < 2:
        return None, None
    axis = -1 if ref.ndim == 3 else 2  # (samples, batch, classes) or (samples, batch, C, ...)
    ref_rows = np.moveaxis(ref, axis, -1).reshape(-1, ref.shape[axis])
    cand_rows = np.moveaxis(cand, axis, -1).reshape(-1, ref.shape[axis])
    ref_top1 = ref_rows.argmax(axis=1)
    top1 = float(np.mean(ref_top1 == cand_rows.argmax(axis=1)))
    k = min(5, ref_rows.shape[1])
    cand_topk = np.argpartition(-cand_rows, k - 1, axis=1)[:, :k]
    top5 = float(np.mean(np.any(cand_topk == ref_top1[:, None], axis=1)))
    return top1, top5
