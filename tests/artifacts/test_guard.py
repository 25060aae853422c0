"""Interrupts: recorded for the run, raised between stages, and never printed as a traceback."""
from __future__ import annotations

import os
import signal
import sys
import time
import types

import pytest

from pipeline.artifacts import guard


def _swallow(number: int) -> None:
    """The signal arrives and library code swallows its KeyboardInterrupt."""
    try:
        os.kill(os.getpid(), number)
        time.sleep(5)  # the handler raises here
    except KeyboardInterrupt:
        pass


@pytest.mark.parametrize("number", [signal.SIGTERM, signal.SIGINT])
def test_a_swallowed_interrupt_is_raised_at_the_next_check(number):
    with guard.signals_as_interrupt():
        _swallow(number)
        assert guard.interrupted()
        with pytest.raises(KeyboardInterrupt):
            guard.raise_if_interrupted()


def test_each_run_starts_uninterrupted():
    with guard.signals_as_interrupt():
        _swallow(signal.SIGTERM)
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
        _swallow(signal.SIGTERM)
        sys.unraisablehook(_unraisable(KeyboardInterrupt))  # ours, recorded: not shown
        sys.unraisablehook(_unraisable(ValueError))
    assert [info.exc_type for info in shown] == [KeyboardInterrupt, ValueError]
    assert sys.unraisablehook == shown.append


def test_the_signal_handlers_are_restored():
    before = {number: signal.getsignal(number) for number in guard.INTERRUPT_SIGNALS}
    with guard.signals_as_interrupt():
        assert signal.getsignal(signal.SIGTERM) != before[signal.SIGTERM]
    assert {number: signal.getsignal(number) for number in before} == before
