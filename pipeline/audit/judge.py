"""The verdict of each comparison, against the float64 oracle and the float32 noise floor.

Two questions, kept apart:
- conversion correctness: did the converter keep the model? The candidate's error against its
  oracle, as a multiple of the noise floor, must stay within NOISE_RATIO_BOUND. A float32
  backend's oracle is the float64 model; an fp16 file's is what a correct fp16 file computes: the
  converter's own float32 TFLite file with its constants rounded through float16
  (pipeline/model/fp16_storage.py), so a correct fp16 file passes at any depth and an fp16-only bug
  (one weight tensor scaled by 1.02) fails;
- precision cost (fp16, int8): what the lower precision costs a user, as SNR and top-1/top-5
  agreement against PyTorch (and against TFLite fp32), measured on the in-distribution samples
  (the seeded or user's samples, not the edge cases, which are reported apart). Against the
  default budget a miss is a warning; against a budget the config sets it fails. int8 has no
  simulation of its own rounding, so its budget (default or set) decides its verdict.

Config `tolerances` still override, with the allclose rule, and `rule` says what decided.
Where there is no oracle (the ONNX route), the allclose rule decides, as before.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

import numpy as np

from pipeline.compare import (DEFAULT_BUDGETS, Comparison, PrecisionBudget, evidence_problem, snr_and_topk,
                              tolerance_for)
from pipeline.audit.noise import ILL_CONDITIONED, NOISE_RATIO_BOUND, worst_sample
from pipeline.names import PRECISION


LOWER_PRECISION_RULE = ("an fp16 file is judged against the fp32 TFLite file with its constants stored as float16, by the "
                        "float32 noise bound; its precision cost (SNR, top-1/top-5 against PyTorch and TFLite fp32, on the "
                        "in-distribution samples) is a warning below the default budget and fails only below a budget the "
                        "config sets; an int8 file is judged by its precision budget on the in-distribution samples, "
                        "edge cases reported apart")
EDGE_CASES = ("zeros", "constant", "max_magnitude")


@dataclass(frozen=True)
class Oracle:
    """The float64 run every float32 program is measured against, and the floors derived from it."""

    backend: str | None
    available: bool
    reason: str
    outputs: dict[str, np.ndarray] = field(default_factory=dict, repr=False)
    sample_floors: dict[str, np.ndarray] = field(default_factory=dict, repr=False)  # output -> floor per input sample
    floor_source: str = ""  # how the floors were measured
    rejected: dict | None = None  # a float64 run that was not used: why, and where it parts from float32
    # output -> per sample, how far float32 rounding moves the float64 output, as a fraction of its scale
    # (noise.rounding_spread); a sample above ILL_CONDITIONED is not judged. Empty where it was not measured.
    rounding_spread: dict[str, np.ndarray] = field(default_factory=dict, repr=False)

    def judged(self, output: str) -> np.ndarray | None:
        """The samples of `output` that can judge a float32 program (None where every one can)."""
        spread = self.rounding_spread.get(output)
        if spread is None or not np.any(spread > ILL_CONDITIONED):
            return None
        return spread <= ILL_CONDITIONED

    def ill_conditioned(self) -> dict[str, list[int]]:
        """Per output, the samples whose output is set by rounding (not judged)."""
        return {name: [int(i) for i in np.flatnonzero(spread > ILL_CONDITIONED)]
                for name, spread in self.rounding_spread.items() if np.any(spread > ILL_CONDITIONED)}

    @property
    def floors(self) -> dict[str, float]:
        """Each output's largest floor over the judged samples (what the report shows)."""
        def largest(name: str, values: np.ndarray) -> float:
            judged = self.judged(name)
            return float(np.max(values[judged] if judged is not None and judged.any() else values))
        return {name: largest(name, values) for name, values in self.sample_floors.items()}

    def to_json(self) -> dict:
        return {"backend": self.backend, "available": self.available, "reason": self.reason,
                "floor_source": self.floor_source, "floors": self.floors, "bound": NOISE_RATIO_BOUND,
                "lower_precision": LOWER_PRECISION_RULE, "rejected": self.rejected,
                **({"ill_conditioned": self.ill_conditioned(), "ill_conditioned_bound": ILL_CONDITIONED}
                   if self.ill_conditioned() else {})}


@dataclass(frozen=True)
class Evidence:
    """What every comparison of one audit is judged with."""

    oracle: Oracle
    fp16_oracle: Oracle | None = None  # what a correct fp16 file computes (fp16_storage), when there is an fp16 file
    overrides: dict = field(default_factory=dict)  # config tolerances
    budgets: dict[str, PrecisionBudget] = field(default_factory=dict)  # config-set budgets: a miss fails
    labels: tuple[str, ...] = ()  # what each sample is (random_0, ..., zeros, constant, max_magnitude)
    tflite_fp32: dict[str, np.ndarray] | None = None  # for the cost of a lower precision against fp32

    def in_distribution(self, samples: int) -> np.ndarray:
        """The samples a lower precision is made for: every sample but the edge cases."""
        labels = list(self.labels) if len(self.labels) == samples else ["random"] * samples
        mask = np.array([label not in EDGE_CASES for label in labels])
        return mask if mask.any() else np.ones(samples, bool)


def judge(c: Comparison, reference: np.ndarray, candidate: np.ndarray | None, evidence: Evidence) -> Comparison:
    """The comparison with its oracle error, noise ratio and the verdict of the rule that applies.
    A pass needs evidence: agreement with an output that carries no signal stays inconclusive, while a
    disagreement beyond the rule fails even there (a constant output that comes out wrong is evidence)."""
    precision = PRECISION.get(c.candidate, "fp32")
    if c.error is not None or candidate is None:
        return _explain_non_finite(c, evidence) if precision == "fp16" else c
    oracle = evidence.fp16_oracle if precision == "fp16" and evidence.fp16_oracle else evidence.oracle
    judged = oracle.judged(c.output)
    by_floor = precision == "fp32" or oracle is evidence.fp16_oracle
    overridden = c.candidate in evidence.overrides or precision in evidence.overrides
    if judged is not None and not judged.any() and by_floor and not overridden:
        return dataclasses.replace(c, verdict="inconclusive", passed=False, reason=(
            "every sample's output is set by rounding: one float32 rounding of the weights and inputs moves the "
            f"float64 output by more than {ILL_CONDITIONED:.0%} of its scale, so no float32 program can be judged on "
            "them; give inputs the model is made for (config `inputs`, or `audit --samples`)"))
    measured = _noise(c, candidate, oracle)
    if overridden:
        return dataclasses.replace(c, **measured, rule="tolerance (config)")
    if precision in ("fp16", "int8"):
        judged = _lower_precision(dataclasses.replace(c, **measured), reference, candidate, precision, evidence)
    elif measured.get("noise_ratio") is not None:
        judged = _by_noise_floor(dataclasses.replace(c, **measured), oracle)
    else:
        return c
    weak = evidence_problem(reference, tolerance_for(c.candidate)) if judged.verdict == "pass" else None
    return dataclasses.replace(judged, verdict="inconclusive", passed=False, reason=weak) if weak else judged


def _lower_precision(c: Comparison, reference: np.ndarray, candidate: np.ndarray, precision: str,
                     evidence: Evidence) -> Comparison:
    """fp16 with its storage reference: correctness by the noise bound, the cost beside it (a warning,
    or a failure against a budget the config set). int8, or fp16 without such a reference: the budget decides."""
    c = _with_cost(c, reference, candidate, evidence)
    set_budget = evidence.budgets.get(precision)
    over = _over_budget(c, set_budget or DEFAULT_BUDGETS[precision])
    simulated = precision == "fp16" and evidence.fp16_oracle is not None and c.noise_ratio is not None
    if simulated:
        judged = _by_noise_floor(c, evidence.fp16_oracle, rule="fp16 storage floor")
        if over and set_budget is not None and judged.verdict == "pass":
            return _failed_budget(judged, over)
        return dataclasses.replace(judged, warning=_cost_warning(over)) if over else judged
    if over:
        return _failed_budget(c, over)
    return dataclasses.replace(c, verdict="pass", passed=True, reason=None, rule="precision budget")


def with_storage_reference_checked(comparisons: list[Comparison]) -> list[Comparison]:
    """An fp16 file judged against its storage reference is only as right as the float32 TFLite file that
    reference was rounded from. Where that file fails for the same output and the fp16 file sits nearer to
    it than to PyTorch, the two share a conversion error, and an fp16 pass would bless it: it fails too,
    saying so. An fp16 file nearer to PyTorch than to the failing file keeps its pass (the fp32 file's
    error is its own, say a runtime fault at one shape); where there is no measurement to tell, it is
    inconclusive."""
    failed_fp32 = {(c.output, _shape_key(c)): c for c in comparisons
                   if c.candidate == "tflite_fp32" and c.verdict == "fail"}
    return [_storage_reference_checked(c, failed_fp32.get((c.output, _shape_key(c))))
            if c.rule == "fp16 storage floor" and c.verdict == "pass" else c
            for c in comparisons]


def _shape_key(c: Comparison) -> tuple:
    return tuple(sorted((c.shape or {}).items()))


def _storage_reference_checked(c: Comparison, fp32: Comparison | None) -> Comparison:
    """On every sample, edge cases included: the fp16 file follows the failing fp32 file when it sits nearer
    to it than half that file's own error; it keeps its pass only when its own error from PyTorch is at most
    half the fp32 file's; in between, which one it follows is not measured well enough to say."""
    if fp32 is None:
        return c
    near = (c.precision_cost or {}).get("beside_tflite_fp32")
    ratio = f" ({fp32.noise_ratio:.3g}x its noise floor)" if fp32.noise_ratio is not None else ""
    lead = (f"agrees with its fp16 storage reference, but that reference is the float32 TFLite file, which fails the "
            f"audit{ratio}")
    if near is None:
        return dataclasses.replace(c, verdict="inconclusive", passed=False, reason=(
            f"{lead}, and there is no measurement of which of the two the fp16 file follows"))
    measured = (f"{near['to_fp32']:.3g} from it, {near['to_reference']:.3g} from PyTorch, where the fp32 file is "
                f"{near['fp32_error']:.3g} off")
    if near["to_fp32"] < near["fp32_error"] / 2:
        return dataclasses.replace(c, verdict="fail", passed=False, reason=(
            f"{lead}, and the fp16 file follows it ({measured}): the fp16 file carries the same conversion error"))
    if near["to_reference"] * 2 <= near["fp32_error"]:
        return c
    return dataclasses.replace(c, verdict="inconclusive", passed=False, reason=(
        f"{lead}, and the fp16 file is not clearly nearer either ({measured})"))


def _failed_budget(c: Comparison, over: list[str]) -> Comparison:
    return dataclasses.replace(c, verdict="fail", passed=False, reason="precision cost over budget: " + "; ".join(over),
                               rule="precision budget")


def _cost_warning(over: list[str]) -> str:
    return ("precision cost over the default budget: " + "; ".join(over)
            + " (a warning: set precision_budget in the config to make it fail)")


def _with_cost(c: Comparison, reference: np.ndarray, candidate: np.ndarray, evidence: Evidence) -> Comparison:
    """SNR and top-k on the in-distribution samples (what the table shows for a lower precision), with
    the same against TFLite fp32 and each edge case's SNR apart, in `precision_cost`."""
    mask = evidence.in_distribution(len(reference))
    logits = c.top1_agreement is not None
    inside = _metrics(reference[mask], candidate[mask], logits)
    cost = {"samples": int(mask.sum()), **inside}
    fp32 = (evidence.tflite_fp32 or {}).get(c.output)
    if fp32 is not None and np.shape(fp32) == np.shape(candidate) and c.candidate != "tflite_fp32":
        cost["vs_tflite_fp32"] = _metrics(fp32[mask], candidate[mask], logits)
        cost["beside_tflite_fp32"] = _beside(reference, candidate, fp32)
    labels = list(evidence.labels) if len(evidence.labels) == len(reference) else []
    edges = {label: _metrics(reference[i:i + 1], candidate[i:i + 1], False)["snr_db"]
             for i, label in enumerate(labels) if not mask[i]}
    if edges:
        cost["edge_cases_snr_db"] = edges
    return dataclasses.replace(c, snr_db=inside["snr_db"], top1_agreement=inside["top1_agreement"],
                               top5_agreement=inside["top5_agreement"], precision_cost=cost)


def _beside(reference: np.ndarray, candidate: np.ndarray, fp32: np.ndarray) -> dict:
    """On every sample, edge cases included: how far the candidate is from the fp32 TFLite file and from
    PyTorch, and the fp32 file's own error (which of the two a lower-precision file follows)."""
    wide = lambda a: np.asarray(a, np.float64)  # noqa: E731
    return {"to_fp32": float(np.max(np.abs(wide(candidate) - wide(fp32)))),
            "to_reference": float(np.max(np.abs(wide(candidate) - wide(reference)))),
            "fp32_error": float(np.max(np.abs(wide(fp32) - wide(reference))))}


def _metrics(reference: np.ndarray, candidate: np.ndarray, logits: bool) -> dict:
    return snr_and_topk(reference, candidate, logits)


def _explain_non_finite(c: Comparison, evidence: Evidence) -> Comparison:
    """An fp16 file with NaN/Inf where the reference has none: say whether float16 storage itself explains it."""
    sim = evidence.fp16_oracle
    if c.error != "candidate output holds NaN or Inf" or sim is None or c.output not in sim.outputs:
        return c
    if np.all(np.isfinite(sim.outputs[c.output])):
        why = ("candidate output holds NaN or Inf, while the fp32 file with float16 constants stays finite: the "
               "conversion, not float16, made them")
    else:
        why = ("candidate output holds NaN or Inf, and so does the fp32 file with float16 constants: a constant "
               "float16 cannot hold (see the fp16 lint findings: an epsilon stored as 0, a mask beyond 65504)")
    return dataclasses.replace(c, reason=why)


def _noise(c: Comparison, candidate: np.ndarray, oracle: Oracle) -> dict:
    """The candidate's error against the oracle, judged sample by sample against that sample's floor:
    the ratio is the worst sample's, and noise_floor the floor of that sample."""
    floors = oracle.sample_floors.get(c.output)
    truth = oracle.outputs.get(c.output)
    if floors is None or truth is None:
        return {}
    error, floor, ratio = worst_sample(candidate, truth, floors, oracle.judged(c.output))
    return {"oracle_error": error, "noise_floor": floor, "noise_ratio": ratio}


def _by_noise_floor(c: Comparison, oracle: Oracle, rule: str = "noise floor") -> Comparison:
    ratio = c.noise_ratio
    if np.isfinite(ratio) and ratio <= NOISE_RATIO_BOUND:
        return dataclasses.replace(c, verdict="pass", passed=True, reason=None, rule=rule)
    truth = f"the {oracle.backend} oracle" if oracle.available else "PyTorch (no float64 oracle; estimated floor)"
    reason = (f"error against {truth} {c.oracle_error:.3g} is {ratio:.3g}x the float32 noise floor "
              f"{c.noise_floor:.3g} (bound {NOISE_RATIO_BOUND:g}x)")
    return dataclasses.replace(c, verdict="fail", passed=False, reason=reason, rule=rule)


def _over_budget(c: Comparison, budget: PrecisionBudget) -> list[str]:
    over = []
    if budget.min_snr_db is not None and (c.snr_db is None or c.snr_db < budget.min_snr_db):
        snr = "n/a" if c.snr_db is None else f"{c.snr_db:.1f} dB"
        over.append(f"SNR {snr} is below the budget's {budget.min_snr_db:g} dB")
    for name, value, floor in (("top-1", c.top1_agreement, budget.min_top1), ("top-5", c.top5_agreement, budget.min_top5)):
        if floor is not None and value is not None and value < floor:
            over.append(f"{name} agreement {value:.0%} is below the budget's {floor:.0%}")
    return over
