"""make bench's arithmetic on recorded runs (the timing itself is never asserted)."""
import pytest

from pipeline.tools import bench
from pipeline.tools.bench import Measurement
from tests.support import write_config


def _profile() -> dict:
    steps = [
        ("stage: export", 1.0, 3.0, False),
        ("convert: child imports (during export)", 1.1, 2.5, True),
        ("onnx2tf: SavedModel", 4.0, 1.5, True),
        ("stage: convert", 4.2, 2.0, False),
        ("convert: bind inputs and outputs (layout probe)", 5.8, 0.25, False),
        ("backend keras: load", 6.5, 0.5, False),
        ("audit: build the layer model (onnx2tf again, no files)", 7.0, 9.0, True),
    ]
    return {"wall_seconds": 9.0,
            "steps": [{"step": n, "start": st, "seconds": sec, "pid": 2 if child else 1, "child": child} for n, st, sec, child in steps]}


def _result(model: str, pipeline_s: list[float], bare_s: list[float], conversion_s: list[float]) -> dict:
    return {"model": model, "pipeline": [Measurement(s, 1000.0) for s in pipeline_s],
            "bare": [Measurement(s, 800.0) for s in bare_s], "conversions": conversion_s, "profile": _profile(),
            "report": {"verdict": "pass", "comparisons": [], "reference": "pytorch", "exporter": "dynamo"}}


def test_conversion_work_is_the_child_steps_and_the_parents_convert_steps_but_not_the_audits_layer_model():
    # the layer model's child step starts after the convert stage ended (4.2 + 2.0)
    assert bench.conversion_seconds(_profile()) == pytest.approx(2.5 + 1.5 + 0.25)


def test_stage_seconds_come_from_the_stage_steps():
    assert bench.stage_seconds(_profile()) == {"export": 3.0, "convert": 2.0}


def test_goals_carry_the_measured_ratios_and_whether_each_target_is_met():
    results = [_result("seed_ym", [12.0, 10.0, 11.0], [8.0, 8.0, 8.0], [8.4, 8.6, 8.5]),
               _result("zoo/a", [30.0], [20.0], [21.0]), _result("zoo/b", [50.0], [20.0], [21.0])]
    found = {g.what: g for g in bench.goals(results)}
    seed = found["seed_ym pipeline / bare CLI"]
    assert seed.value == pytest.approx(11.0 / 8.0) and not seed.met and "not met" in seed.line()
    assert found["zoo median pipeline / bare CLIs"].value == pytest.approx(2.0)
    assert found["zoo worst pipeline / bare CLIs"].value == pytest.approx(2.5)
    conversion = found["worst conversion / bare CLI (every model)"]
    assert conversion.value == pytest.approx(8.5 / 8.0) and conversion.met


def test_breakdown_lists_each_step_once_in_order_and_names_the_process():
    rows = bench.breakdown(_profile())
    assert rows[2].startswith("| stage: export | pipeline | 1.00 |")
    assert any("| onnx2tf: SavedModel | conversion child |" in row for row in rows)
    assert rows[-1].endswith("| 9.00 |")


def test_rewriting_the_record_keeps_the_batch_section(tmp_path, monkeypatch):
    record = tmp_path / "BENCHMARKS.md"
    record.write_text("# Benchmarks\n\nold table\n\n## Batch\n\nmodels/hour figures\n")
    monkeypatch.setattr(bench, "RECORD", record)
    assert bench._kept_sections() == "\n## Batch\n\nmodels/hour figures\n"


def test_a_keras_file_the_bare_cli_did_not_write_is_left_out_of_the_conversion_figure():
    assert bench.like_for_like([20.0, 22.0], [6.0, 7.0], bare_keras=False) == ([14.0, 15.0], 6.5)
    assert bench.like_for_like([20.0, 22.0], [0.0, 0.0], bare_keras=True) == ([20.0, 22.0], 0.0)
    row = bench.summary_row({**_result("zoo/regnet", [40.0], [20.0], [14.0]), "extra": 6.5})
    assert "14.0 (0.70×) + 6.5 extra Keras file" in row


def test_the_ratio_is_the_larger_against_each_bare_cli_and_2x_counts_only_where_it_made_its_files():
    result = _result("zoo/a", [30.0, 30.0], [20.0, 22.0], [21.0])
    assert bench.ratio(result) == pytest.approx(30.0 / 21.0)
    result["bare2"] = [Measurement(12.0, 700.0), Measurement(10.0, 700.0)]
    assert bench.ratio(result) == pytest.approx(30.0 / 11.0)
    assert "| 11.0 |" in bench.summary_row(result)
    assert "21.0 (1.00×; 1.91× bare 2.x)" in bench.summary_row(result)
    result["pipeline_2x_files"] = [Measurement(16.0, 900.0), Measurement(18.0, 900.0)]
    # against 2.x, the pipeline run that wrote 2.x's files: the files both make
    assert bench.ratio(result) == pytest.approx(17.0 / 11.0)
    assert "| 30.0 | 17.0 | 21.0 | 11.0 |" in bench.summary_row(result)
    result["pipeline_2x_files"] = [Measurement(8.0, 900.0)]
    assert bench.ratio(result) == pytest.approx(30.0 / 21.0), "the larger: a cheaper run hides no slower one"
    result["bare2"] = [Measurement(40.0, 700.0)]  # slower: the 1.x CLI stays the one to beat
    assert bench.ratio(result) == pytest.approx(30.0 / 21.0)
    result["bare2"] = []
    assert "| – |" in bench.summary_row(result) and "bare 2.x" not in bench.summary_row(result)


def test_without_a_side_environment_there_is_no_bare_2x_run(tmp_path, monkeypatch):
    monkeypatch.setattr(bench, "side_environment", lambda: tmp_path / "missing")
    assert bench.bare_onnx2tf2(tmp_path / "model.onnx", tmp_path / "work") is None


def test_the_config_for_2x_files_asks_only_for_them_beside_nothing_the_configs_globs_see(tmp_path):
    import yaml

    from pipeline.config import load_config

    with bench.config_making("seed_ym", bench.FILES_2X) as copy:
        assert "configs" not in copy.parts and copy.exists()
        assert yaml.safe_load(copy.read_text())["artifacts"] == ["saved_model", "tflite_fp32", "tflite_fp16"]
        assert load_config(copy).config.artifacts == ["saved_model", "tflite_fp32", "tflite_fp16"]
    assert not copy.exists()
    (tmp_path / "net.py").write_text("def build():\n    pass\n")
    own = write_config(tmp_path / "own.yaml", "net.py:build", [{"name": "x", "shape": [1, 4]}], checkpoint="w.pt",
                       quantize={"int8": {"calibration": "cal.npz"}})
    with bench.config_making(str(own), bench.FILES_2X) as copy:
        moved = yaml.safe_load(copy.read_text())
    assert moved["model"] == f"{tmp_path / 'net.py'}:build", "paths read relative to the config stay the same files"
    assert moved["checkpoint"] == str(tmp_path / "w.pt")
    assert moved["quantize"]["int8"]["calibration"] == str(tmp_path / "cal.npz")
    fewer = write_config(tmp_path / "fewer.yaml", "net.py:build", [{"name": "x", "shape": [1, 4]}],
                         artifacts=["saved_model", "tflite_fp32"])
    with bench.config_making(str(fewer), bench.FILES_2X) as copy:
        assert copy is None, "it already writes fewer files than bare 2.x: its own run stands for both"
