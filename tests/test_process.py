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
