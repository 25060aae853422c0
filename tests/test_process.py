"""The pipeline changes its own process only when it owns it."""
from __future__ import annotations

import gc

from pipeline import process


def test_settle_leaves_a_process_the_pipeline_does_not_own_alone():
    before = gc.get_freeze_count()
    process.settle()
    assert gc.get_freeze_count() == before


def test_an_owned_process_settles_what_it_imported(monkeypatch):
    monkeypatch.setattr(process, "_owned", False)
    try:
        process.own()
        assert gc.get_freeze_count() > 0
        assert process._owned
    finally:
        gc.unfreeze()  # the test process is pytest's


class _Helper:
    def __init__(self, alive: bool = True) -> None:
        self.running, self.stopped = alive, False

    def alive(self) -> bool:
        return self.running

    def stop(self) -> None:
        self.stopped, self.running = True, False


def test_a_spare_is_started_once_and_taken_once():
    spare, started = process.Spare(), []
    spare.keep(lambda: started.append(_Helper()) or started[-1])
    spare.keep(lambda: started.append(_Helper()) or started[-1])
    assert len(started) == 1 and spare.take() is started[0] and spare.take() is None
    assert not started[0].stopped  # the job that took it stops it


def test_a_dead_spare_is_stopped_not_handed_out_and_a_discarded_one_is_stopped():
    spare, dead, unused = process.Spare(), _Helper(alive=False), _Helper()
    spare.keep(lambda: dead)
    assert spare.take() is None and dead.stopped
    spare.keep(lambda: unused)
    spare.discard()
    assert unused.stopped and spare.held is None
