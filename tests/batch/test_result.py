from pipeline.batch.result import TaskResult, worst_per_backend


def test_worst_per_backend_takes_the_largest_and_skips_missing():
    worst = worst_per_backend([
        {"candidate": "keras", "output": "a", "max_abs": 1e-6, "noise_ratio": 2.0},
        {"candidate": "keras", "output": "b", "max_abs": 3e-6, "noise_ratio": None},
        {"candidate": "tflite_fp16", "output": "a", "max_abs": 1e-3},
    ])
    assert [(w.backend, w.max_abs, w.noise_ratio) for w in worst] == [("keras", 3e-6, 2.0), ("tflite_fp16", 1e-3, None)]


def test_json_round_trip():
    result = TaskResult(model="m", arg="m.yaml", verdict="pass", reason="", exit_code=0, seconds=1.5,
                        backends=worst_per_backend([{"candidate": "keras", "max_abs": 1.0}]), timings={"export": 1.0})
    assert TaskResult.from_json(result.to_json()) == result
    assert result.has_report
    assert not TaskResult.from_json({**result.to_json(), "verdict": "timeout"}).has_report
