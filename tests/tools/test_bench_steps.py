"""make bench's steps section: its arithmetic and markdown on recorded runs (the timing itself is never asserted)."""
import pytest

from pipeline.tools import bench, bench_steps
from pipeline.tools.bench_steps import AuditRun, PrecisionCost, ShapesCost, Variant

SHAPES = ["batch 3, height 32, width 32", "batch 2, height 24, width 40"]


def _run(seconds: float, audit_seconds: float = 4.0, **steps: float) -> AuditRun:
    return AuditRun(seconds, audit_seconds, {name.replace("_", " "): value for name, value in steps.items()})


def _at(where: str, seconds: float) -> dict:
    return {f"audit: at {where}": seconds}


def _shapes(example: list[float], every: list[float]) -> ShapesCost:
    return ShapesCost("configs/dynamic/fcn_dynamic.yaml", SHAPES, [_run(s) for s in example],
                      [AuditRun(s, 6.0, {**_at(SHAPES[0], 0.5 + i), **_at(SHAPES[1], 0.25)}) for i, s in enumerate(every)])


def _precision() -> PrecisionCost:
    fp16 = "audit: fp16 storage reference"
    tflite = "audit: TFLite files layer by layer"
    plain = [AuditRun(10.0, 4.0, {fp16: 0.2}), AuditRun(12.0, 5.0, {fp16: 0.5}), AuditRun(11.0, 4.0, {fp16: 0.4})]
    layers = [AuditRun(30.0, 25.0, {fp16: 0.3, tflite: 5.0}), AuditRun(33.0, 20.0, {fp16: 0.3, tflite: 2.0})]
    return PrecisionCost("zoo/mobilenet_v2", plain, layers)


def test_the_shapes_ratio_is_of_the_medians_and_its_goal_says_whether_it_is_met():
    met = _shapes([10.0, 12.0, 11.0], [13.0, 14.0, 12.5])
    assert met.ratio() == pytest.approx(13.0 / 11.0)
    assert met.goal().met and met.goal().line().startswith("- audit at 3 shapes / at the example shape alone (fcn_dynamic): 1.18")
    missed = _shapes([10.0, 10.0, 10.0], [13.5, 14.0, 13.0])
    assert not missed.goal().met and "(target ≤ 1.3) — **not met**" in missed.goal().line()


def test_each_extra_shape_gets_the_median_of_its_own_profile_step():
    per_shape = _shapes([10.0, 10.0, 10.0], [12.0, 12.0, 12.0]).per_shape()
    assert per_shape == {SHAPES[0]: pytest.approx(1.5), SHAPES[1]: pytest.approx(0.25)}


def test_the_precision_shares_are_of_the_audit_stage_and_the_layers_ratio_of_the_wall_medians():
    cost = _precision()
    assert cost.layers_ratio() == pytest.approx(31.5 / 11.0)
    row = bench_steps._precision_row(cost)
    # fp16: median 0.40 s, and the median of 0.2/4, 0.5/5, 0.4/4 = 10%; TFLite: median 3.5 s, of 5/25, 2/20 = 15%
    assert "| 0.40 (10.0%) |" in row and "(**2.86×**)" in row and "| 3.50 (15.0%) |" in row


def test_variants_alternate_with_the_order_swapped_every_round_and_each_is_prepared_before_its_run():
    order = []
    variants = [Variant("a", prepare=lambda: order.append("prepare a")), Variant("b", ("--layers",), lambda: order.append("prepare b"))]
    runs = bench_steps.alternate(variants, 3, lambda v: (order.append(v.name), _run(1.0))[1])
    assert order == ["prepare a", "a", "prepare b", "b", "prepare b", "b", "prepare a", "a", "prepare a", "a", "prepare b", "b"]
    assert {name: len(r) for name, r in runs.items()} == {"a": 3, "b": 3}


def test_the_section_renders_the_goal_both_audits_and_the_precision_table(monkeypatch):
    monkeypatch.setattr(bench_steps, "machine", lambda: "a test machine")
    text = bench_steps.markdown(_shapes([10.0, 12.0, 11.0], [13.0, 14.0, 12.5]), [_precision()], "2026-12-06", "abc1234",
                                "Measured beside a running batch job.")
    assert text.startswith("## This round's steps\n") and text.endswith(".\n") and not text.endswith("\n\n")
    assert "(commit abc1234). Machine: a test machine. Measured beside a running batch job." in text
    assert "- audit at 3 shapes / at the example shape alone (fcn_dynamic): 1.18 (target ≤ 1.3) — met" in text
    assert "| example shape alone | 3 | 10.0, 12.0, 11.0 | 11.0 | 4.0 |" in text
    assert f"| 3 shapes (the example; {SHAPES[0]}; {SHAPES[1]}) | 3 | 13.0, 14.0, 12.5 | 13.0 | 6.0 |" in text
    assert f"{SHAPES[0]} 1.50 s; {SHAPES[1]} 0.25 s" in text
    assert "| zoo/mobilenet_v2 | 3 + 2 | 11.0 | 4.0 |" in text


def test_the_section_is_inserted_before_the_batch_section_and_then_replaced_in_place():
    record = "# Benchmarks\n\nmodels table\n\n## Batch\n\nmodels/hour\n"
    first = bench_steps.with_section(record, "## This round's steps\n\nfirst figures\n")
    assert first == "# Benchmarks\n\nmodels table\n\n## This round's steps\n\nfirst figures\n\n## Batch\n\nmodels/hour\n"
    second = bench_steps.with_section(first, "## This round's steps\n\nsecond figures\n")
    assert second == first.replace("first", "second")
    alone = bench_steps.with_section("# Benchmarks\n\nmodels table\n", "## This round's steps\n\nfigures\n")
    assert alone == "# Benchmarks\n\nmodels table\n\n## This round's steps\n\nfigures\n"


def test_a_models_run_keeps_the_steps_section_and_the_batch_section(tmp_path, monkeypatch):
    record = tmp_path / "BENCHMARKS.md"
    record.write_text("# Benchmarks\n\nold table\n\n## This round's steps\n\nratios\n\n## Batch\n\nmodels/hour\n")
    monkeypatch.setattr(bench, "RECORD", record)
    assert bench._kept_sections() == "\n## This round's steps\n\nratios\n\n## Batch\n\nmodels/hour\n"


@pytest.mark.parametrize("argv, models, steps", [
    ([], "default", True), (["steps"], None, True), (["seed_ym"], ["seed_ym"], False),
    (["seed_ym", "steps"], ["seed_ym"], True)])
def test_steps_run_alone_by_name_and_after_the_default_models(monkeypatch, argv, models, steps):
    ran = []
    monkeypatch.setattr(bench, "_models", lambda names, repeat: ran.append(names) or "")
    monkeypatch.setattr(bench_steps, "run_and_record", lambda repeat, note: ran.append("steps") or "")
    bench.main(argv)
    expected_models = bench._default_models() if models == "default" else models
    assert ran == ([expected_models] if expected_models else []) + (["steps"] if steps else [])
