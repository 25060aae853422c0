"""The README's wide-zoo coverage table, from a batch folder's batch.json and each model's report.json."""
import json

from pipeline.tools import zoo_coverage


def _comparison(candidate: str, noise_ratio: float | None, snr_db: float | None = 60.0) -> dict:
    return {"candidate": candidate, "noise_ratio": noise_ratio, "snr_db": snr_db}


def _batch(tmp_path, results: list[dict], reports: dict[str, dict]):
    (tmp_path / "batch.json").write_text(json.dumps({"results": results}))
    for model, report in reports.items():
        (tmp_path / model).mkdir()
        (tmp_path / model / "report.json").write_text(json.dumps(report))
    return tmp_path


def test_each_model_gets_its_converter_its_worst_tf_float32_ratio_and_its_fp16_judgement(tmp_path):
    first = {"conversion": {"converter": "onnx2tf"}, "comparisons": [
        _comparison("onnxruntime", 3.0), _comparison("tf_saved_model", 0.31), _comparison("keras", 0.5),
        _comparison("tflite_fp32", 0.4), _comparison("tflite_fp16", 0.0)]}
    second = {"conversion": {"converter": "onnx2tf2"}, "comparisons": [
        _comparison("tf_saved_model", 1.234), _comparison("tflite_fp32", 0.2), _comparison("tflite_fp16", None, 57.4)]}
    folder = _batch(tmp_path, [{"model": "vit", "verdict": "pass", "seconds": 41.6},
                               {"model": "bert", "verdict": "pass", "seconds": 16.2},
                               {"model": "glpn", "verdict": "fail", "seconds": 420.0, "reason": "timed out"}],
                    {"bert": first, "vit": second})
    table = zoo_coverage.rows(folder)
    assert table[:2] == zoo_coverage.HEADER
    assert table[2] == "| bert | pass (1.x, 16 s) | TF float32 at most 0.5x the floor; fp16 0x its storage floor |"
    assert table[3] == "| glpn | fail (420 s) | no report: timed out |"
    assert table[4] == ("| vit | pass (2.x, 42 s) | TF float32 at most 1.2x the floor; fp16 57 dB (precision budget); "
                        "no Keras file (2.x writes none that loads) |")


def test_a_report_without_an_snr_or_a_conversion_record_still_gets_its_row(tmp_path):
    report = {"comparisons": [_comparison("tf_saved_model", 0.3), _comparison("tflite_fp16", None, None)]}
    folder = _batch(tmp_path, [{"model": "odd", "verdict": "inconclusive", "seconds": 9.0}], {"odd": report})
    assert zoo_coverage.rows(folder)[2] == ("| odd | inconclusive (1.x, 9 s) | TF float32 at most 0.3x the floor; "
                                            "fp16 not judged (no SNR); no Keras file |")


def test_a_folder_without_a_batch_record_is_one_error_line(tmp_path, capsys):
    assert zoo_coverage.main([str(tmp_path)]) == 2
    assert "has no batch.json" in capsys.readouterr().err
