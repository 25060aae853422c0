"""pipeline/repair/search.py: a converted candidate is kept for the next round only when it changed an error."""
from __future__ import annotations

from types import SimpleNamespace

from pipeline.artifacts.repair_record import BackendError, RepairAttempt
from pipeline.repair.search import _by_output, _unchanged


def errors(**by_output: float) -> list[BackendError]:
    return [BackendError("tf_saved_model", output, "fail", value, 1e-6, value / 1e-6) for output, value in by_output.items()]


def attempt(**by_output: float) -> RepairAttempt:
    return RepairAttempt("perm", "transpose-perm", "test", [], True, False, 1.0, "off", max(by_output.values()),
                         errors(**by_output))


def test_a_candidate_that_moved_no_output_is_unchanged_and_one_that_moved_a_branch_is_not():
    state = SimpleNamespace(errors=_by_output(errors(logits=0.573, features=0.02)))
    assert _unchanged(attempt(logits=0.573, features=0.02), state)
    assert not _unchanged(attempt(logits=0.573, features=0.3), state)  # the worst output as it was, another changed
    assert not _unchanged(attempt(other=0.573), SimpleNamespace(errors=_by_output(errors(logits=0.573))))  # nothing shared


def test_a_candidate_whose_backend_could_not_run_says_why_not_nan():
    """RoBERTa's 2.x TFLite file: LiteRT refused a GATHER_ND on every sample; the attempt said 'still off by nan'."""
    from pipeline.repair.search import _still_failing

    reason = "tflite_fp32: inference failed (RuntimeError: gather_nd index out of bounds)"
    result = SimpleNamespace(comparisons=[SimpleNamespace(candidate="tflite_fp32", output="output", verdict="fail", reason=reason)])
    could_not_run = [BackendError("tf_saved_model", "output", "pass", 3e-7, 1e-6, 0.2),
                     BackendError("tflite_fp32", "output", "fail", float("nan"), None, None)]
    assert _still_failing(result, could_not_run) == f"audit: tflite_fp32 'output' failed: {reason}"
    off = [BackendError("tflite_fp32", "output", "fail", 0.5, 1e-6, 5e5)]
    assert _still_failing(result, off) == "audit: tflite_fp32 'output' still off by 0.5 (5e+05x its noise floor)"


def test_layout_candidates_have_nothing_to_aim_at_when_the_failing_backends_could_not_run():
    from pipeline.compare import Tolerance, not_run
    from pipeline.repair.search import _nothing_off

    def ran(candidate, verdict, max_abs):
        return SimpleNamespace(candidate=candidate, output="output", verdict=verdict, max_abs=max_abs, error=None)

    no_load = [not_run("pytorch", "keras", "output", Tolerance(1e-4, 1e-4), "keras: could not load the model (IndexError)"),
               ran("tf_saved_model", "pass", 3e-7)]
    assert _nothing_off(no_load, None, None)
    assert not _nothing_off(no_load, SimpleNamespace(node="n1"), None), "a localized divergence gives them an aim"
    assert not _nothing_off(no_load + [ran("tflite_fp32", "fail", 0.5)], None, None), "numbers off: layout candidates aim there"
    assert not _nothing_off(no_load + [ran("tflite_fp32", "fail", float("nan"))], None, None), "a NaN output ran: numbers off"
    assert not _nothing_off([ran("keras", "pass", 3e-7)], None, None)


def test_a_promoted_winner_leaves_no_outputs_of_the_files_it_replaced(tmp_path):
    """ViT repaired by 2.x: outputs/keras.npz and fp16_storage.npz of the 1.x files stayed, listed in the manifest."""
    from pipeline.artifacts.folder import ArtifactDir
    from pipeline.repair.search import _outputs_of_the_old_files

    artifacts = ArtifactDir(tmp_path)
    artifacts.outputs.mkdir(parents=True)
    names = ["pytorch", "onnxruntime", "pytorch_fp64", "keras", "keras@batch3", "tf_saved_model", "tflite_fp16", "fp16_storage"]
    for name in names:
        (artifacts.outputs / f"{name}.npz").write_bytes(b"")
    old = SimpleNamespace(models={"keras": "model.keras", "tf_saved_model": "saved_model", "tflite_fp16": "model_float16.tflite"})
    stale = sorted(p.stem for p in _outputs_of_the_old_files(artifacts, old))
    assert stale == ["fp16_storage", "keras", "keras@batch3", "tf_saved_model", "tflite_fp16"]
