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
