"""Interrupts: recorded for the run, raised between stages, and never printed as a traceback."""
from __future__ import annotations

import signal
import sys
import types

import pytest

from pipeline.artifacts import guard
from tests.support import swallow_signal


@pytest.mark.parametrize("number", [signal.SIGTERM, signal.SIGINT])
def test_a_swallowed_interrupt_is_raised_at_the_next_check(number):
    with guard.signals_as_interrupt():
        swallow_signal(number)
        assert guard.interrupted()
        with pytest.raises(KeyboardInterrupt):
            guard.raise_if_interrupted()


def test_each_run_starts_uninterrupted():
    with guard.signals_as_interrupt():
        swallow_signal(signal.SIGTERM)
    with guard.signals_as_interrupt():
        assert not guard.interrupted()
        guard.raise_if_interrupted()


def _unraisable(exc_type: type) -> types.SimpleNamespace:
    return types.SimpleNamespace(exc_type=exc_type, exc_value=exc_type(), exc_traceback=None, err_msg=None, object=None)


def test_an_interrupt_python_cannot_raise_is_not_printed_but_other_errors_are(monkeypatch):
    shown = []
    monkeypatch.setattr(sys, "unraisablehook", shown.append)
    with guard.signals_as_interrupt():
        sys.unraisablehook(_unraisable(KeyboardInterrupt))  # before any signal: not ours, shown
        swallow_signal(signal.SIGTERM)
        sys.unraisablehook(_unraisable(KeyboardInterrupt))  # ours, recorded: not shown
        sys.unraisablehook(_unraisable(ValueError))
    assert [info.exc_type for info in shown] == [KeyboardInterrupt, ValueError]
    assert sys.unraisablehook == shown.append


def test_the_signal_handlers_are_restored():
    before = {number: signal.getsignal(number) for number in guard.INTERRUPT_SIGNALS}
    with guard.signals_as_interrupt():
        assert signal.getsignal(signal.SIGTERM) != before[signal.SIGTERM]
    assert {number: signal.getsignal(number) for number in before} == before
