"""pipeline/audit/judge.py: verdicts against the float64 oracle and the noise floor, precision budgets, overrides."""
from __future__ import annotations

import numpy as np
import pytest

from pipeline.compare import Tolerance, compare_arrays
from pipeline.audit.judge import Evidence, Oracle, PrecisionBudget, judge, with_storage_reference_checked
from pipeline.audit.noise import NOISE_RATIO_BOUND, sample_floors

RNG = np.random.default_rng(0)
TRUTH = RNG.normal(size=(4, 1, 32)).astype(np.float64) * 5  # the oracle, stacked by sample
PYTORCH = (TRUTH + RNG.normal(scale=1e-6, size=TRUTH.shape)).astype(np.float32)  # a correct float32 program
FLOORS = sample_floors(PYTORCH, TRUTH, [])
FLOOR = float(FLOORS.max())
ORACLE = Oracle("pytorch_fp64", True, "test", {"y": TRUTH}, {"y": FLOORS}, "PyTorch float32 against the oracle")


LABELS = ("random_0", "random_1", "random_2", "random_3")


def judged(candidate: np.ndarray, backend: str = "onnxruntime", overrides: dict | None = None, budgets=None,
           oracle: Oracle = ORACLE, fp16_oracle: Oracle | None = None, labels=LABELS, reference=PYTORCH,
           tflite_fp32: np.ndarray | None = None):
    raw = compare_arrays(reference, candidate, Tolerance(1e-4, 1e-4), ("pytorch", backend, "y"), logits=True)
    fp32 = {"y": tflite_fp32} if tflite_fp32 is not None else None
    evidence = Evidence(oracle, fp16_oracle, overrides or {}, budgets or {}, labels, fp32)
    return judge(raw, reference, candidate, evidence)


def storage_oracle(stored: np.ndarray) -> Oracle:
    """What a correct fp16 file computes (the float32 file with float16 constants), with the model's float32 floor."""
    floors = np.maximum(sample_floors(stored, stored, []), FLOORS)
    return Oracle("fp16_storage", True, "test", {"y": stored}, {"y": floors}, "test")


def test_a_candidate_as_close_to_the_oracle_as_pytorch_passes_by_the_noise_floor():
    other = (TRUTH + RNG.normal(scale=1e-6, size=TRUTH.shape)).astype(np.float32)
    c = judged(other)
    assert (c.verdict, c.rule) == ("pass", "noise floor")
    assert any(c.noise_floor == pytest.approx(f) for f in FLOORS) and c.noise_ratio < 3


def test_a_subtle_bug_far_above_the_floor_fails_even_within_the_old_tolerance():
    buggy = (TRUTH * (1 + 4e-5)).astype(np.float32)  # tens of floors, yet within atol + rtol*|ref|
    assert np.all(np.abs(buggy - PYTORCH) <= 1e-4 + 1e-4 * np.abs(PYTORCH))
    c = judged(buggy)
    assert c.verdict == "fail" and c.noise_ratio > NOISE_RATIO_BOUND
    assert "x the float32 noise floor" in c.reason


def test_without_a_storage_simulation_fp16_is_judged_by_its_precision_cost():
    noisy = (TRUTH * (1 + RNG.normal(scale=1e-3, size=TRUTH.shape))).astype(np.float32)  # ~60 dB SNR
    c = judged(noisy, backend="tflite_fp16")
    assert (c.verdict, c.rule) == ("pass", "precision budget")
    assert c.noise_ratio > NOISE_RATIO_BOUND  # far above the fp32 floor, reported but not the judge
    broken = (TRUTH * (1 + RNG.normal(scale=0.2, size=TRUTH.shape))).astype(np.float32)
    c = judged(broken, backend="tflite_fp16")
    assert c.verdict == "fail" and c.reason.startswith("precision cost over budget: SNR")


# A deep model stored in float16: far from the original (about 18 dB), and exactly what storage allows.
STORED = TRUTH * (1 + RNG.normal(scale=0.15, size=TRUTH.shape))


def test_a_correct_fp16_file_passes_against_its_storage_simulation_with_the_cost_as_a_warning():
    file = (STORED + RNG.normal(scale=1e-6, size=STORED.shape)).astype(np.float32)
    c = judged(file, backend="tflite_fp16", fp16_oracle=storage_oracle(STORED))
    assert (c.verdict, c.rule) == ("pass", "fp16 storage floor")
    assert c.noise_ratio <= NOISE_RATIO_BOUND and c.snr_db < 30
    assert c.warning.startswith("precision cost over the default budget: SNR")


def test_an_fp16_only_bug_fails_against_the_storage_simulation_though_its_snr_is_high():
    good = TRUTH * (1 + RNG.normal(scale=1e-3, size=TRUTH.shape))  # ~60 dB from PyTorch
    file = (good * 1.02).astype(np.float32)  # a weight scaled by 1.02: still ~34 dB, within the old budget
    c = judged(file, backend="tflite_fp16", fp16_oracle=storage_oracle(good))
    assert c.snr_db > 30
    assert (c.verdict, c.rule) == ("fail", "fp16 storage floor") and "noise floor" in c.reason


def test_an_fp16_file_that_matches_a_wrong_fp32_file_fails_with_it():
    wrong = (TRUTH + 0.5).astype(np.float32)  # a conversion error the fp32 and fp16 files share
    fp32 = judged(wrong, backend="tflite_fp32")
    fp16 = judged(wrong, backend="tflite_fp16", fp16_oracle=storage_oracle(wrong.astype(np.float64)), tflite_fp32=wrong)
    assert fp32.verdict == "fail" and (fp16.verdict, fp16.rule) == ("pass", "fp16 storage floor")
    checked = with_storage_reference_checked([fp32, fp16])
    assert checked[0] is fp32 and checked[1].verdict == "fail"
    assert "float32 TFLite file, which fails the audit" in checked[1].reason and "the fp16 file follows it (" in checked[1].reason
    right = judged(PYTORCH, backend="tflite_fp32")
    assert with_storage_reference_checked([right, fp16])[1] is fp16  # a passing fp32 file leaves it alone


def test_an_fp16_file_nearer_pytorch_than_a_failing_fp32_file_keeps_its_pass():
    stored = TRUTH * (1 + RNG.normal(scale=1e-4, size=TRUTH.shape))  # what float16 storage costs
    file = stored.astype(np.float32)
    faulty = (TRUTH + 0.01).astype(np.float32)  # the fp32 file's own fault (say, at one runtime shape only)
    fp32 = judged(faulty, backend="tflite_fp32")
    fp16 = judged(file, backend="tflite_fp16", fp16_oracle=storage_oracle(stored), tflite_fp32=faulty)
    assert fp32.verdict == "fail" and fp16.verdict == "pass"
    assert with_storage_reference_checked([fp32, fp16])[1] is fp16
    unmeasured = judged(file, backend="tflite_fp16", fp16_oracle=storage_oracle(stored))  # no fp32 outputs to compare
    assert with_storage_reference_checked([fp32, unmeasured])[1].verdict == "inconclusive"


def test_an_fp16_file_sharing_an_fp32_error_seen_on_an_edge_case_or_below_its_own_noise_never_keeps_its_pass():
    labels = ("random_0", "random_1", "random_2", "max_magnitude")
    edge_only = PYTORCH.copy()
    edge_only[3] += 0.5  # the fp32 file's error, on the edge case alone (the in-distribution cost cannot see it)
    stored = edge_only.astype(np.float64) * (1 + RNG.normal(scale=1e-4, size=TRUTH.shape))
    fp32 = judged(edge_only, backend="tflite_fp32", labels=labels)
    fp16 = judged(stored.astype(np.float32), backend="tflite_fp16", fp16_oracle=storage_oracle(stored), labels=labels,
                  tflite_fp32=edge_only)
    assert fp32.verdict == "fail" and with_storage_reference_checked([fp32, fp16])[1].verdict == "fail"
    small = (PYTORCH + 2e-4).astype(np.float32)  # a shared error below float16 storage's own noise
    noisy = small.astype(np.float64) * (1 + RNG.normal(scale=1e-3, size=TRUTH.shape))
    fp32 = judged(small, backend="tflite_fp32")
    fp16 = judged(noisy.astype(np.float32), backend="tflite_fp16", fp16_oracle=storage_oracle(noisy), tflite_fp32=small)
    assert fp32.verdict == "fail" and with_storage_reference_checked([fp32, fp16])[1].verdict != "pass"


def test_a_budget_the_config_sets_fails_a_correct_fp16_file_that_misses_it():
    file = (STORED + RNG.normal(scale=1e-6, size=STORED.shape)).astype(np.float32)
    c = judged(file, backend="tflite_fp16", fp16_oracle=storage_oracle(STORED),
               budgets={"fp16": PrecisionBudget(min_snr_db=30.0)})
    assert (c.verdict, c.rule) == ("fail", "precision budget") and "SNR" in c.reason


def test_int8_is_judged_on_the_samples_it_was_made_for_with_edge_cases_apart():
    labels = ("random_0", "random_1", "zeros", "constant")
    int8 = PYTORCH * (1 + RNG.normal(scale=3e-3, size=PYTORCH.shape)).astype(np.float32)  # ~50 dB
    int8[2:] = PYTORCH[2:] * 0.3  # the edge cases, outside the calibration range: about 3 dB
    c = judged(int8, backend="tflite_int8", labels=labels)
    assert (c.verdict, c.rule) == ("pass", "precision budget") and c.snr_db > 40
    assert c.precision_cost["samples"] == 2
    assert set(c.precision_cost["edge_cases_snr_db"]) == {"zeros", "constant"}
    assert max(c.precision_cost["edge_cases_snr_db"].values()) < 5
    collapsed = PYTORCH * 0.3
    c = judged(collapsed.astype(np.float32), backend="tflite_int8", labels=labels)
    assert c.verdict == "fail" and "precision cost over budget" in c.reason


def test_a_configured_budget_on_top1_agreement_is_applied():
    shuffled = PYTORCH[:, :, ::-1].copy()
    c = judged(shuffled, backend="tflite_fp16", budgets={"fp16": PrecisionBudget(min_snr_db=None, min_top1=0.9)})
    assert c.verdict == "fail" and "top-1 agreement" in c.reason


def test_config_tolerances_override_and_say_so():
    buggy = (TRUTH * (1 + 4e-5)).astype(np.float32)
    c = judged(buggy, overrides={"fp32": Tolerance(1e-4, 1e-4)})
    assert (c.verdict, c.rule) == ("pass", "tolerance (config)")
    assert c.noise_ratio > NOISE_RATIO_BOUND  # still measured and shown


def test_without_an_oracle_the_tolerance_rule_decides():
    none = Oracle(None, False, "ONNX route")
    c = judged((TRUTH * (1 + 4e-5)).astype(np.float32), oracle=none)
    assert c.rule == "tolerance" and c.noise_ratio is None


def test_the_floor_is_never_below_a_few_roundings_of_the_output_scale():
    exact = TRUTH.astype(np.float32).astype(np.float64)
    floors = sample_floors(exact, TRUTH, [])
    scales = np.abs(TRUTH).reshape(len(TRUTH), -1).max(axis=1)
    assert np.all(floors >= 16 * np.finfo(np.float32).eps / 2 * scales * (1 - 1e-9))


def test_without_a_float64_run_the_floor_is_a_stated_estimate_from_pytorch_and_onnx_runtime():
    from pipeline.audit.stage import _estimated_oracle

    ort = (TRUTH + RNG.normal(scale=2e-6, size=TRUTH.shape)).astype(np.float32)
    oracle = _estimated_oracle({"pytorch": {"y": PYTORCH}, "onnxruntime": {"y": ort}}, "pytorch_fp64: could not load")
    assert oracle.available is False and oracle.backend is None
    assert "estimated as the spread between PyTorch and ONNX Runtime" in oracle.reason
    assert oracle.floors["y"] >= np.max(np.abs(ort.astype(np.float64) - PYTORCH)) * (1 - 1e-12)
    buggy = (PYTORCH * (1 + 4e-4)).astype(np.float32)
    c = judged(buggy, oracle=oracle)
    assert c.verdict == "fail" and "no float64 oracle; estimated floor" in c.reason


def test_an_ill_conditioned_sample_gets_a_floor_of_its_own():
    """One sample where float32 rounding is amplified (the perturbed oracle moves a lot there) does not
    lift the floor of the others: a bug on a well-conditioned sample still fails."""
    moved = TRUTH.copy()
    moved[3] += 1e-3  # the oracle's spread under one-rounding perturbations, on the last sample only
    floors = sample_floors(PYTORCH, TRUTH, [moved])
    assert floors[3] == pytest.approx(1e-3) and floors[:3].max() < 1e-4
    oracle = Oracle("pytorch_fp64", True, "test", {"y": TRUTH}, {"y": floors}, "test")
    noisy_where_ill = TRUTH.copy()
    noisy_where_ill[3] += 5e-4  # within that sample's floor
    assert judged(noisy_where_ill.astype(np.float32), oracle=oracle).verdict == "pass"
    buggy = TRUTH.copy()
    buggy[0] *= 1 + 4e-5  # tens of floors on a well-conditioned sample
    c = judged(buggy.astype(np.float32), oracle=oracle)
    assert c.verdict == "fail" and c.noise_floor == pytest.approx(floors[0])


def test_a_disagreement_with_a_constant_output_fails_while_agreement_with_it_stays_inconclusive():
    constant = np.repeat(TRUTH[:1], len(TRUTH), axis=0)  # the inputs never reach the output
    fp32 = (constant + RNG.normal(scale=1e-6, size=constant.shape)).astype(np.float32)
    oracle = Oracle("pytorch_fp64", True, "test", {"y": constant}, {"y": sample_floors(fp32, constant, [])}, "test")
    fp32 = np.repeat(fp32[:1], len(fp32), axis=0)

    def verdict(candidate):
        raw = compare_arrays(fp32, candidate, Tolerance(1e-4, 1e-4), ("pytorch", "keras", "y"))
        return judge(raw, fp32, candidate, Evidence(oracle))

    assert verdict(fp32.copy()).verdict == "inconclusive"
    off = (constant * (1 + 4e-5)).astype(np.float32)  # within atol + rtol*|ref|, tens of floors from the oracle
    c = verdict(off)
    assert c.verdict == "fail" and c.noise_ratio > NOISE_RATIO_BOUND


def _ill_conditioned_on(samples: list[int]) -> Oracle:
    """ORACLE where `samples` are set by rounding (a 12% spread, as wav2vec2 on a constant waveform)."""
    spread = np.full(len(TRUTH), 1e-6)
    spread[samples] = 0.12
    floors = FLOORS.copy()
    floors[samples] = 0.12 * np.abs(TRUTH[samples]).reshape(len(samples), -1).max(axis=1)
    return Oracle("pytorch_fp64", True, "test", {"y": TRUTH}, {"y": floors}, "test", rounding_spread={"y": spread})


def test_a_sample_set_by_rounding_judges_nothing_and_the_rest_still_judge():
    oracle = _ill_conditioned_on([3])
    off_there = PYTORCH.copy()
    off_there[3] += 3.0  # far beyond 10x that sample's floor, where any float32 program may land
    c = judged(off_there, oracle=oracle)
    assert c.verdict == "pass" and c.noise_ratio < 3
    assert c.oracle_error < 1e-3  # the error of the judged samples, not the unjudged one
    off_elsewhere = off_there.copy()
    off_elsewhere[0] *= 1 + 4e-5  # a subtle bug on a well-conditioned sample still fails
    assert judged(off_elsewhere, oracle=oracle).verdict == "fail"
    assert oracle.to_json()["ill_conditioned"] == {"y": [3]}
    assert "ill_conditioned" not in ORACLE.to_json()


@pytest.mark.parametrize("broken", [np.nan, np.inf, -np.inf])
def test_nan_or_inf_on_a_sample_set_by_rounding_still_fails(broken):
    """A sample set by rounding may land on any finite number, and only there is it excused: a NaN or Inf
    fails the comparison, whichever samples are judged by the floor."""
    for unjudged in ([3], [0, 1, 2, 3]):
        candidate = PYTORCH.copy()
        candidate[3, 0, 5] = broken
        c = judged(candidate, oracle=_ill_conditioned_on(unjudged))
        assert c.verdict == "fail" and c.reason == "candidate output holds NaN or Inf"


def test_when_every_sample_is_set_by_rounding_the_verdict_is_inconclusive():
    c = judged(PYTORCH + 3.0, oracle=_ill_conditioned_on([0, 1, 2, 3]))
    assert c.verdict == "inconclusive" and "every sample's output is set by rounding" in c.reason


def test_the_floor_the_report_shows_is_the_judged_samples_largest():
    assert _ill_conditioned_on([3]).floors["y"] == pytest.approx(float(FLOORS[:3].max()))


def test_the_audit_names_the_samples_set_by_rounding_once_per_output_and_shape():
    from pipeline.audit.stage import InputSet, _ill_conditioned

    labels = ["random_0", "random_1", "random_2", "constant"]
    sets = [InputSet({}, "the example shape", []), InputSet({"batch": 3}, "batch 3", [])]
    lines = _ill_conditioned([_ill_conditioned_on([3]), ORACLE], sets, labels)
    assert lines == [
        "'y': samples 'constant' are not judged: one float32 rounding of the weights and inputs moves the float64 "
        "output there by up to 0.12 of its scale (bound 0.01), so its value is set by rounding (a near-constant "
        "input through a normalization, say); every other sample is judged"]
    every = _ill_conditioned([_ill_conditioned_on([0, 1, 2, 3])] * 2, sets, labels)
    assert every[1].startswith("'y' at batch 3: samples 'random_0', 'random_1', 'random_2', 'constant' are not judged")
    assert every[1].endswith("no sample is left to judge")


def test_a_precision_judged_by_its_budget_with_every_sample_set_by_rounding_still_gets_a_verdict():
    c = judged(PYTORCH.copy(), backend="tflite_int8", oracle=_ill_conditioned_on([0, 1, 2, 3]))
    assert c.verdict in ("pass", "fail") and c.rule == "precision budget"
