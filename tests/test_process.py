"""The pipeline changes its own process only when it owns it."""
from __future__ import annotations

import gc

import pytest

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


def test_fewer_collections_only_in_an_owned_process_and_only_inside_the_block(monkeypatch):
    before = gc.get_threshold()
    with process.fewer_collections():
        assert gc.get_threshold() == before  # pytest's process
    monkeypatch.setattr(process, "_owned", True)
    with pytest.raises(KeyError), process.fewer_collections():
        assert gc.get_threshold() == (process.YOUNG_THRESHOLD, *before[1:])
        raise KeyError("the block fails")
    assert gc.get_threshold() == before


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
