"""pipeline/compare.py (run_all, compare, the pass rule) and the Runner base class it drives."""
from __future__ import annotations

import math

import numpy as np
import pytest

from pipeline.compare import (
    evidence_problem,
    overall_verdict,
    DEFAULT_TOLERANCES,
    Comparison,
    Tolerance,
    compare,
    compare_arrays,
    run_all,
    run_sets,
    tolerance_for,
)
from pipeline.errors import RunnerError
from pipeline.inputs import TensorSpec
from pipeline.runners.base import Runner

TIGHT = Tolerance(atol=1e-4, rtol=1e-4)
NAMES = ("pytorch", "onnxruntime", "y")


def check(ref, cand, tol: Tolerance = TIGHT) -> Comparison:
    return compare_arrays(np.asarray(ref, dtype=np.float64), None if cand is None else np.asarray(cand, dtype=np.float64), tol, NAMES)


# --- the pass rule ----------------------------------------------------------

def test_large_reference_passes_through_rtol_although_max_abs_exceeds_atol():
    result = check([[100.0, -200.0]], [[100.005, -200.01]])
    assert result.max_abs > result.atol
    assert result.passed and bool(result)
    assert result.fraction_beyond_tol == 0.0


def test_rule_is_per_element_not_max_abs_against_the_largest_reference():
    # 0.005 is within rtol of the large element but not of the zero next to it.
    result = check([[0.0, 100.0]], [[0.005, 100.005]])
    assert result.max_abs <= TIGHT.atol + TIGHT.rtol * result.ref_max_abs
    assert not result.passed and not bool(result)
    assert result.fraction_beyond_tol == 0.5
    assert result.error is None


def test_difference_just_inside_and_just_outside_the_bound():
    bound = TIGHT.atol + TIGHT.rtol * 2.0
    assert check([[2.0]], [[2.0 + 0.99 * bound]]).passed
    assert not check([[2.0]], [[2.0 + 1.01 * bound]]).passed


@pytest.mark.parametrize("scale", [1e-3, 1.0, 1e3])
def test_pass_rule_agrees_with_np_allclose(scale):
    rng = np.random.default_rng(0)
    ref = rng.standard_normal((4, 64)) * scale
    verdicts = set()
    for noise in (1e-7, 1e-6, 1e-5, 1e-4, 1e-3, 1e-2, 1.0):
        cand = ref + rng.standard_normal(ref.shape) * noise * scale
        expected = np.allclose(cand, ref, atol=TIGHT.atol, rtol=TIGHT.rtol)
        assert check(ref, cand).passed == expected
        verdicts.add(expected)
    assert verdicts == {True, False}  # both outcomes were exercised


def test_statistics_on_a_small_example():
    result = check([[1.0, -2.0, 0.0, 4.0]], [[1.5, -2.0, 0.25, 4.0]], Tolerance(0.1, 0.0))
    assert result.max_abs == 0.5
    assert result.mean_abs == pytest.approx(0.75 / 4)
    assert result.max_rel == 0.5  # 0.5/1; the 0.25 on a zero reference is not a relative error
    assert result.ref_max_abs == 4.0
    assert result.fraction_beyond_tol == 0.5
    assert (result.reference, result.candidate, result.output) == NAMES
    assert (result.atol, result.rtol) == (0.1, 0.0)


def test_cosine():
    rng = np.random.default_rng(0)
    ref = rng.standard_normal((2, 16))
    assert check(ref, ref).cosine == pytest.approx(1.0)
    assert check(ref, -ref, Tolerance(1e9, 0)).cosine == pytest.approx(-1.0)
    assert check(np.zeros((1, 4)), np.zeros((1, 4))).cosine == 1.0
    assert check(np.zeros((1, 4)), np.ones((1, 4)), Tolerance(1e9, 0)).cosine == 0.0


def test_identical_outputs_pass_with_zero_difference():
    ref = np.random.default_rng(0).standard_normal((3, 2, 5)).astype(np.float32)
    result = compare_arrays(ref, ref.copy(), TIGHT, NAMES)
    assert (result.passed, result.max_abs, result.mean_abs, result.max_rel) == (True, 0.0, 0.0, 0.0)


# --- structural problems ----------------------------------------------------

def assert_structural_failure(result: Comparison, error: str) -> None:
    assert not result.passed
    assert result.error == error
    assert math.isnan(result.max_abs) and math.isnan(result.cosine)


def test_shape_mismatch_fails_with_the_per_sample_shapes():
    result = check(np.zeros((2, 1, 4)), np.zeros((2, 4, 1)))
    assert_structural_failure(result, "shape mismatch: reference [1, 4], candidate [4, 1]")


def test_nan_in_the_candidate_fails():
    assert_structural_failure(check([[1.0, 2.0]], [[1.0, np.nan]]), "candidate output holds NaN or Inf")


def test_inf_in_the_reference_fails():
    assert_structural_failure(check([[np.inf, 2.0]], [[np.inf, 2.0]]), "reference output holds NaN or Inf")


def test_missing_candidate_output_fails():
    assert_structural_failure(check([[1.0]], None), "candidate has no such output")


def test_comparison_to_json_holds_every_field():
    payload = check([[1.0]], [[1.0]]).to_json()
    assert payload["passed"] is True and payload["error"] is None
    assert {"max_abs", "mean_abs", "max_rel", "cosine", "ref_max_abs", "fraction_beyond_tol", "atol", "rtol"} <= set(payload)


# --- tolerances -------------------------------------------------------------

def test_fp16_default_is_looser_than_fp32():
    fp32, fp16 = tolerance_for("tflite_fp32"), tolerance_for("tflite_fp16")
    assert fp32 == DEFAULT_TOLERANCES["fp32"] and fp16 == DEFAULT_TOLERANCES["fp16"]
    assert fp16.atol > fp32.atol and fp16.rtol > fp32.rtol


def test_unknown_backend_gets_the_fp32_default():
    assert tolerance_for("some_new_backend") == DEFAULT_TOLERANCES["fp32"]


def test_backend_override_beats_precision_override_beats_default():
    by_name, by_precision = Tolerance(0.5, 0.5), Tolerance(0.25, 0.25)
    assert tolerance_for("tflite_fp16", {"tflite_fp16": by_name, "fp16": by_precision}) == by_name
    assert tolerance_for("tflite_fp16", {"fp16": by_precision}) == by_precision
    assert tolerance_for("tflite_fp16", {"fp32": by_precision, "keras": by_name}) == DEFAULT_TOLERANCES["fp16"]
    assert tolerance_for("keras", {"fp32": by_precision}) == by_precision


# --- compare over RunResults ------------------------------------------------

def test_compare_each_candidate_output_against_the_reference():
    rng = np.random.default_rng(0)
    y, z = rng.standard_normal((2, 8)), rng.standard_normal((2, 3))
    results = {
        "pytorch": {"y": y, "z": z},
        "onnxruntime": {"y": y + 1e-7, "z": z},
        "tflite_fp16": {"y": y + 5e-3, "z": z + 0.5},  # y within fp16 tolerance, z is not
    }
    comparisons = compare(results, "pytorch", ["onnxruntime", "tflite_fp16"])
    assert [(c.candidate, c.output, c.passed) for c in comparisons] == [
        ("onnxruntime", "y", True), ("onnxruntime", "z", True), ("tflite_fp16", "y", True), ("tflite_fp16", "z", False),
    ]
    assert {c.reference for c in comparisons} == {"pytorch"}
    assert comparisons[2].atol == DEFAULT_TOLERANCES["fp16"].atol
    assert comparisons[0].atol == DEFAULT_TOLERANCES["fp32"].atol


def test_compare_uses_overrides_and_reports_missing_outputs():
    ref = np.array([[1.0, 2.0]])
    results = {"pytorch": {"y": ref, "z": ref}, "keras": {"y": ref + 0.3}}
    y, z = compare(results, "pytorch", ["keras"], {"keras": Tolerance(0.5, 0.0)})
    assert y.passed and y.atol == 0.5 and y.verdict == "pass"
    assert not z.passed and z.error == "candidate has no such output" and z.verdict == "fail"


# --- no pass without evidence -------------------------------------------------

def _ref(values) -> np.ndarray:
    return np.asarray(values, dtype=np.float32)


def test_tiny_outputs_are_inconclusive_never_pass():
    ref = _ref(np.random.default_rng(0).standard_normal((4, 1, 10)) * 1e-21)
    (c,) = compare({"pytorch": {"y": ref}, "onnxruntime": {"y": ref * 1.5}}, "pytorch", ["onnxruntime"])
    assert (c.passed, c.verdict) == (False, "inconclusive")
    assert "within atol=0.0001: an all-zero output would pass" in c.reason


def test_denormal_outputs_are_below_dtype_precision():
    ref = _ref(np.full((2, 3), 1e-37)) * _ref([[1, 2, 3], [3, 2, 1]])
    reason = evidence_problem(ref, Tolerance(0.0, 0.0))
    assert reason.startswith("the reference output's magnitude") and "float32 can represent" in reason


def test_output_that_ignores_its_input_is_inconclusive():
    same = np.tile(_ref([[0.5, -2.0, 3.0]]), (4, 1, 1))
    (c,) = compare({"pytorch": {"y": same}, "keras": {"y": same}}, "pytorch", ["keras"])
    assert c.verdict == "inconclusive" and "the same for all 4 input samples" in c.reason


def test_nan_reference_and_empty_output_are_inconclusive_but_nan_candidate_fails():
    ref = _ref([[1.0, np.nan]])
    (c,) = compare({"pytorch": {"y": ref}, "keras": {"y": _ref([[1.0, 2.0]])}}, "pytorch", ["keras"])
    assert c.verdict == "inconclusive" and c.reason == "reference output holds NaN or Inf"
    good = _ref([[1.0, 2.0], [3.0, 4.0]])
    (d,) = compare({"pytorch": {"y": good}, "keras": {"y": _ref([[1.0, np.nan], [3.0, 4.0]])}}, "pytorch", ["keras"])
    assert d.verdict == "fail"
    (e,) = compare({"pytorch": {"y": _ref(np.zeros((2, 0)))}, "keras": {"y": _ref(np.zeros((2, 0)))}}, "pytorch", ["keras"])
    assert e.verdict == "inconclusive" and e.reason == "the reference output is empty"


def test_disagreement_beyond_tolerance_fails_even_on_weak_evidence():
    ref = _ref([[1e-5, 2e-5], [3e-5, 1e-5]])
    (c,) = compare({"pytorch": {"y": ref}, "keras": {"y": ref + 1.0}}, "pytorch", ["keras"])
    assert c.verdict == "fail"


def test_overall_verdict_orders_fail_inconclusive_pass():
    assert overall_verdict(["pass", "inconclusive", "fail"]) == "fail"
    assert overall_verdict(["pass", "inconclusive"]) == "inconclusive"
    assert overall_verdict(["pass"]) == "pass"


# --- run_all and the Runner base class --------------------------------------

class DoublingRunner(Runner):
    """A fake backend: y = 2x, plus an undeclared output the base class must drop."""

    name = "doubling"

    def __init__(self, input_specs, output_names, fail_on_load=False, fail_on_infer=False):
        super().__init__(input_specs, output_names)
        self.fail_on_load, self.fail_on_infer = fail_on_load, fail_on_infer
        self.events: list[str] = []

    def _activate_impl(self):
        self.events.append("activate")
        if self.fail_on_load:
            raise FileNotFoundError("model.tflite is gone\nsecond line")

    def _infer_impl(self, feed):
        if self.fail_on_infer:
            raise ValueError("bad kernel\ndetails")
        return {"y": feed["x"] * 2, "debug": feed["x"]}

    def _deactivate_impl(self):
        self.events.append("deactivate")


X = TensorSpec("x", (2, 3), "float32")


def make_feeds(count: int) -> list[dict[str, np.ndarray]]:
    return [{"x": np.full((2, 3), i, dtype=np.float32)} for i in range(count)]


def test_run_all_stacks_each_runners_outputs_per_sample():
    first, second = DoublingRunner([X], ["y"]), DoublingRunner([X], ["y"])
    second.name = "doubling_again"
    seen = []
    results = run_all([first, second], make_feeds(3), on_sample=lambda name, i: seen.append((name, i)))
    assert sorted(results) == ["doubling", "doubling_again"]
    assert list(results["doubling"]) == ["y"]  # the undeclared 'debug' output is dropped
    assert results["doubling"]["y"].shape == (3, 2, 3)
    np.testing.assert_array_equal(results["doubling"]["y"][:, 0, 0], [0, 2, 4])
    assert seen == [("doubling", 0), ("doubling", 1), ("doubling", 2), ("doubling_again", 0), ("doubling_again", 1), ("doubling_again", 2)]
    assert first.events == ["activate", "deactivate"] and not first.is_active
    assert len(first.inference_seconds) == 3


class PickyRunner(DoublingRunner):
    """Fails on feeds whose value is `bad` (a shape the backend cannot take, say)."""

    def __init__(self, input_specs, output_names, bad):
        super().__init__(input_specs, output_names)
        self.bad = bad

    def _infer_impl(self, feed):
        if float(feed["x"].flat[0]) == self.bad:
            raise ValueError("cannot resize")
        return super()._infer_impl(feed)


def test_run_sets_loads_each_runner_once_for_every_set_and_keeps_a_failure_to_its_set():
    good, picky = DoublingRunner([X], ["y"]), PickyRunner([X], ["y"], bad=7)
    picky.name = "picky"
    sets = [make_feeds(2), [{"x": np.full((2, 3), 7, dtype=np.float32)}], make_feeds(3)]
    results, broken = run_sets([good, picky], sets)
    assert good.events == ["activate", "deactivate"] and picky.events == ["activate", "deactivate"]
    assert [results[i]["doubling"]["y"].shape[0] for i in range(3)] == [2, 1, 3]
    assert "picky" in results[0] and "picky" not in results[1] and "picky" in results[2]
    assert broken[0] == {} and broken[2] == {}
    assert broken[1] == {"picky": "picky: inference failed (ValueError: cannot resize)"}
    idle = DoublingRunner([X], ["y"])
    assert run_sets([idle], []) == ([], []) and idle.events == [], "no input set: nothing is loaded"


def test_run_sets_stops_when_the_reference_cannot_run_and_records_a_load_failure_everywhere():
    reference, after = PickyRunner([X], ["y"], bad=7), DoublingRunner([X], ["y"])
    reference.name = "pytorch"
    results, broken = run_sets([reference, after], [make_feeds(1), [{"x": np.full((2, 3), 7, dtype=np.float32)}]],
                               reference="pytorch")
    assert "pytorch" in broken[1] and after.events == [], "nothing runs once the reference cannot"
    unloadable = DoublingRunner([X], ["y"], fail_on_load=True)
    _, broken = run_sets([unloadable], [make_feeds(1), make_feeds(2)])
    assert all("could not load the model" in b["doubling"] for b in broken)


def test_run_all_results_compare_cleanly():
    results = run_all([DoublingRunner([X], ["y"])], make_feeds(2))
    results["pytorch"] = {"y": results["doubling"]["y"].copy()}
    (comparison,) = compare(results, "pytorch", ["doubling"])
    assert comparison.passed and comparison.max_abs == 0.0


def test_infer_before_activate_is_refused():
    with pytest.raises(RunnerError, match=r"^doubling: infer\(\) called before activate\(\)$"):
        DoublingRunner([X], ["y"]).infer(make_feeds(1)[0])


def test_feed_missing_an_input_is_refused():
    with DoublingRunner([X], ["y"]) as runner:
        with pytest.raises(RunnerError, match=r"^doubling: missing input 'x'; got \['w'\]$"):
            runner.infer({"w": np.zeros((2, 3), dtype=np.float32)})


def test_feed_with_a_wrong_shape_is_refused():
    with DoublingRunner([X], ["y"]) as runner:
        with pytest.raises(RunnerError, match=r"^doubling: input 'x' has shape \[3, 2\], expected \[2, 3\]$"):
            runner.infer({"x": np.zeros((3, 2), dtype=np.float32)})


def test_backend_failures_become_one_line_runner_errors():
    with pytest.raises(RunnerError, match=r"^doubling: could not load the model \(FileNotFoundError: model\.tflite is gone\)$"):
        DoublingRunner([X], ["y"], fail_on_load=True).activate()
    with DoublingRunner([X], ["y"], fail_on_infer=True) as runner:
        with pytest.raises(RunnerError, match=r"^doubling: inference failed \(ValueError: bad kernel\)$"):
            runner.infer(make_feeds(1)[0])


def test_backend_missing_a_declared_output_is_a_runner_error():
    with DoublingRunner([X], ["y", "z"]) as runner:
        with pytest.raises(RunnerError, match="z"):
            runner.infer(make_feeds(1)[0])


def test_a_backend_that_could_not_run_fails_with_its_reason():
    from pipeline.compare import not_run

    c = not_run("pytorch", "tflite_fp32", "y", Tolerance(1e-4, 1e-4), "tflite_fp32: uses Select TF ops ['FlexAvgPool3D']")
    assert (c.passed, c.verdict) == (False, "fail")
    assert c.reason == "could not run: tflite_fp32: uses Select TF ops ['FlexAvgPool3D']"


def test_a_comparisons_shape_is_written_only_for_dynamic_models():
    from pipeline.compare import Comparison

    static = Comparison("pytorch", "keras", "output", 0.0, 0.0, 0.0, 1.0, 1.0, 0.0, 1e-4, 1e-4, True)
    assert "shape" not in static.to_json()
    dynamic = Comparison("pytorch", "keras", "output", 0.0, 0.0, 0.0, 1.0, 1.0, 0.0, 1e-4, 1e-4, True, shape={"batch": 3})
    assert dynamic.to_json()["shape"] == {"batch": 3}
    assert Comparison.from_json(dynamic.to_json()).shape == {"batch": 3}


@pytest.mark.parametrize("logits", [False, True])
def test_snr_and_topk_are_compare_arrays_own_numbers_without_the_rest(logits):
    from pipeline.compare import snr_and_topk

    rng = np.random.default_rng(0)
    ref = rng.normal(size=(4, 2, 10)).astype(np.float32)
    cand = (ref + rng.normal(scale=0.3, size=ref.shape)).astype(np.float32)
    full = compare_arrays(ref, cand, Tolerance(0.0, 0.0), ("", "", ""), logits)
    assert snr_and_topk(ref, cand, logits) == {"snr_db": full.snr_db, "top1_agreement": full.top1_agreement,
                                               "top5_agreement": full.top5_agreement}
    assert (snr_and_topk(ref, cand, logits)["top1_agreement"] is None) is not logits
    cand[0, 0, 0] = np.nan  # a structural problem: compare_arrays records no SNR, and neither does this
    assert snr_and_topk(ref, cand, logits) == {"snr_db": None, "top1_agreement": None, "top5_agreement": None}
    assert compare_arrays(ref, cand, Tolerance(0.0, 0.0), ("", "", ""), logits).snr_db is None
