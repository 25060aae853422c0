"""The verdict of each comparison, against the float64 oracle and the float32 noise floor.

Two questions, kept apart:
- conversion correctness (float32 backends): did the converter preserve the model? The
  candidate's error against the oracle, as a multiple of the noise floor, must stay within
  NOISE_RATIO_BOUND;
- precision cost (fp16, int8): what the lower precision costs a user, as SNR and top-1/top-5
  agreement against PyTorch, within a budget the config can set. No faithful simulation of a
  TFLite fp16 file's own rounding is made, so fp16 is judged by its precision cost alone.

Config `tolerances` still override, with the allclose rule, and `rule` says what decided.
Where there is no oracle (the ONNX route), the allclose rule decides, as before.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

import numpy as np

from pipeline.audit.compare import Comparison, evidence_problem, tolerance_for
from pipeline.audit.noise import NOISE_RATIO_BOUND, worst_sample
from pipeline.names import PRECISION


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
LOWER_PRECISION_RULE = ("fp16 and int8 files are judged by their precision cost (SNR, top-1/top-5 agreement against "
                        "PyTorch) within the config's precision_budget; no simulation of the file's own rounding is made, "
                        "so their noise_ratio is reported but does not decide")


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


    @property
    def floors(self) -> dict[str, float]:
        """Each output's largest floor over the samples (what the report shows)."""
        return {name: float(np.max(values)) for name, values in self.sample_floors.items()}

    def to_json(self) -> dict:
        return {"backend": self.backend, "available": self.available, "reason": self.reason,
                "floor_source": self.floor_source, "floors": self.floors, "bound": NOISE_RATIO_BOUND,
                "lower_precision": LOWER_PRECISION_RULE, "rejected": self.rejected}


def judge(c: Comparison, reference: np.ndarray, candidate: np.ndarray | None, oracle: Oracle, overrides: dict,
          budgets: dict[str, PrecisionBudget]) -> Comparison:
    """The comparison with its oracle error, noise ratio and the verdict of the rule that applies.
    A pass needs evidence: agreement with an output that carries no signal stays inconclusive, while a
    disagreement beyond the rule fails even there (a constant output that comes out wrong is evidence)."""
    if c.error is not None or candidate is None:
        return c
    measured = _noise(c, candidate, oracle)
    precision = PRECISION.get(c.candidate, "fp32")
    if c.candidate in overrides or precision in overrides:
        return dataclasses.replace(c, **measured, rule="tolerance (config)")
    if precision in budgets:
        judged = _by_budget(dataclasses.replace(c, **measured), budgets[precision])
    elif measured.get("noise_ratio") is not None:
        judged = _by_noise_floor(dataclasses.replace(c, **measured), oracle)
    else:
        return c
    weak = evidence_problem(reference, tolerance_for(c.candidate)) if judged.verdict == "pass" else None
    return dataclasses.replace(judged, verdict="inconclusive", passed=False, reason=weak) if weak else judged


def _noise(c: Comparison, candidate: np.ndarray, oracle: Oracle) -> dict:
    """The candidate's error against the oracle, judged sample by sample against that sample's floor:
    the ratio is the worst sample's, and noise_floor the floor of that sample."""
    floors = oracle.sample_floors.get(c.output)
    truth = oracle.outputs.get(c.output)
    if floors is None or truth is None:
        return {}
    error, floor, ratio = worst_sample(candidate, truth, floors)
    return {"oracle_error": error, "noise_floor": floor, "noise_ratio": ratio}


def _by_noise_floor(c: Comparison, oracle: Oracle) -> Comparison:
    ratio = c.noise_ratio
    if np.isfinite(ratio) and ratio <= NOISE_RATIO_BOUND:
        return dataclasses.replace(c, verdict="pass", passed=True, reason=None, rule="noise floor")
    truth = f"the {oracle.backend} oracle" if oracle.available else "PyTorch (no float64 oracle; estimated floor)"
    reason = (f"error against {truth} {c.oracle_error:.3g} is {ratio:.3g}x the float32 noise floor "
              f"{c.noise_floor:.3g} (bound {NOISE_RATIO_BOUND:g}x)")
    return dataclasses.replace(c, verdict="fail", passed=False, reason=reason, rule="noise floor")


def _by_budget(c: Comparison, budget: PrecisionBudget) -> Comparison:
    over = []
    if budget.min_snr_db is not None and (c.snr_db is None or c.snr_db < budget.min_snr_db):
        snr = "n/a" if c.snr_db is None else f"{c.snr_db:.1f} dB"
        over.append(f"SNR {snr} is below the budget's {budget.min_snr_db:g} dB")
    for name, value, floor in (("top-1", c.top1_agreement, budget.min_top1), ("top-5", c.top5_agreement, budget.min_top5)):
        if floor is not None and value is not None and value < floor:
            over.append(f"{name} agreement {value:.0%} is below the budget's {floor:.0%}")
    if over:
        return dataclasses.replace(c, verdict="fail", passed=False, reason="precision cost over budget: " + "; ".join(over),
                                   rule="precision budget")
    return dataclasses.replace(c, verdict="pass", passed=True, reason=None, rule="precision budget")
