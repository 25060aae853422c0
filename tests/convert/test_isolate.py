"""pipeline/convert/isolate.py: a conversion attempt that runs away is stopped, and says how far it got."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from pipeline.convert import isolate
from pipeline.convert.isolate import Limits, run_isolated
from pipeline.errors import ConversionError


def grow_forever() -> None:
    hoard = []
    while True:
        hoard.append(np.ones(25_000_000, dtype=np.uint8))  # 25 MB a step, touched
        time.sleep(0.01)


def sleep_forever() -> None:
    time.sleep(3600)


def fail_like_the_converter() -> None:
    raise ConversionError("onnx2tf failed on node 'n0' (Conv): simulated")


def answer(value: int) -> int:
    return value * 2


def test_an_attempt_over_the_memory_limit_is_stopped_and_says_at_how_much():
    with pytest.raises(ConversionError, match=r"strategy 'default': stopped at \d+\.\d GB after \d+ s: over the memory limit"):
        run_isolated(grow_forever, (), Limits(400 * 2**20, 120), "strategy 'default'")


def test_an_attempt_over_the_time_limit_is_stopped():
    start = time.monotonic()
    with pytest.raises(ConversionError, match=r"strategy 'x': stopped at \d+ s .*over the time limit"):
        run_isolated(sleep_forever, (), Limits(8 * 2**30, 2), "strategy 'x'")
    assert time.monotonic() - start < 60


def test_a_conversion_error_in_the_child_keeps_its_message():
    with pytest.raises(ConversionError, match=r"^onnx2tf failed on node 'n0' \(Conv\): simulated$"):
        run_isolated(fail_like_the_converter, (), Limits(8 * 2**30, 60), "strategy 'default'")


def test_a_result_comes_back():
    assert run_isolated(answer, (21,), Limits(8 * 2**30, 60), "strategy 'default'") == 42


def answer_after_ctrl_c(value: int) -> int:
    """Ctrl-C in a terminal reaches the child too: the whole process group gets SIGINT."""
    os.kill(os.getpid(), signal.SIGINT)
    time.sleep(0.5)  # a KeyboardInterrupt would be raised here
    return value * 2


def its_helpers_ignore_sigint() -> bool:
    code = "import signal; print(signal.getsignal(signal.SIGINT) == signal.SIG_IGN)"
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60).stdout.strip() == "True"


def test_a_child_leaves_ctrl_c_to_its_parent_as_its_helpers_do():
    """The parent stops the run and its children on SIGINT as on SIGTERM (process.leave_interrupts_to_parent)."""
    assert run_isolated(answer_after_ctrl_c, (21,), Limits(8 * 2**30, 60), "strategy 'default'") == 42
    assert run_isolated(its_helpers_ignore_sigint, (), Limits(8 * 2**30, 60), "strategy 'default'")


def test_a_kept_child_collects_garbage_after_long_jobs_only(monkeypatch):
    import multiprocessing
    import threading

    from pipeline.convert import isolate

    collected = []
    monkeypatch.setattr(isolate.gc, "collect", lambda: collected.append(True))
    monkeypatch.setattr(isolate, "COLLECT_AFTER_SECONDS", 0.2)
    parent, child = multiprocessing.Pipe()
    serving = threading.Thread(target=isolate._serve, args=(child, None))
    serving.start()
    try:
        parent.send((answer, (21,)))
        assert parent.recv()[:2] == ("ok", 42)
        parent.send((time.sleep, (0.3,)))
        assert parent.recv()[0] == "ok"
        parent.send((answer, (1,)))  # answered only after the collection that followed the long job
        assert parent.recv()[:2] == ("ok", 2)
    finally:
        parent.close()
        serving.join(timeout=10)
    assert collected == [True], "one collection: after the long job, none after the quick ones"


_WARMED: list[str] = []


def warm_up_here(how: str = "warmed") -> None:
    _WARMED.append(how)


def warmed() -> list[str]:
    return _WARMED


def test_a_prewarmed_child_calls_its_warm_up_function_before_the_first_job():
    from pipeline.convert.isolate import Child

    child = Child(f"{__name__}:warm_up_here")
    try:
        assert child.call(warmed, ()) == ["warmed"]
    finally:
        child.stop()
    told = Child(f"{__name__}:warm_up_here", ("with the route's flag",))
    try:
        assert told.call(warmed, ()) == ["with the route's flag"]
    finally:
        told.stop()
    plain = Child(__name__)  # a module alone is imported, nothing called
    try:
        assert plain.call(warmed, ()) == []
    finally:
        plain.stop()


def crash_unless_onednn_is_off() -> str:
    """A native crash (as TensorFlow's oneDNN MatMul on WavLM), unless the child was started without oneDNN."""
    if os.environ.get("TF_ENABLE_ONEDNN_OPTS") != "0":
        os.kill(os.getpid(), signal.SIGSEGV)
    return "converted"


def test_a_native_crash_is_told_apart_from_other_deaths_and_a_child_can_start_with_an_environment():
    from pipeline.convert.stage import WITHOUT_ONEDNN
    from pipeline.errors import ConversionCrashed

    before = os.environ.get("TF_ENABLE_ONEDNN_OPTS")
    with pytest.raises(ConversionCrashed, match=r"strategy 'default': the conversion process crashed in native code "
                                                r"\(signal 11, SIGSEGV\) at \d+\.\d GB"):
        run_isolated(crash_unless_onednn_is_off, (), Limits(8 * 2**30, 60), "strategy 'default'")
    assert run_isolated(crash_unless_onednn_is_off, (), Limits(8 * 2**30, 60), "strategy 'default'", WITHOUT_ONEDNN) == "converted"
    assert os.environ.get("TF_ENABLE_ONEDNN_OPTS") == before  # the parent's environment is its own again


def test_a_kill_is_a_death_not_a_crash():
    from pipeline.errors import ConversionCrashed

    with pytest.raises(ConversionError, match=r"died \(exit code -9\)") as raised:
        run_isolated(kill_myself, (), Limits(8 * 2**30, 60), "strategy 'default'")
    assert not isinstance(raised.value, ConversionCrashed)


def kill_myself() -> None:
    os.kill(os.getpid(), signal.SIGKILL)


class CrashingConverter:
    """A converter whose conversion crashes in native code unless oneDNN is off (WavLM in onnx2tf 1.29)."""

    label = "fake"

    def version(self) -> str:
        return "0"

    def available(self) -> None:
        return None

    def convert(self, onnx_path, out_dir, log_path, options):
        from pipeline.converters import ConversionResult

        if os.environ.get("TF_ENABLE_ONEDNN_OPTS") != "0":
            os.kill(os.getpid(), signal.SIGSEGV)
        return ConversionResult(out_dir, None, {}, [], [], "fake", "0", options, notes=["made"])


def test_a_strategy_whose_conversion_crashed_converts_again_without_onednn_and_says_so(tmp_path):
    from pipeline.convert.stage import Strategy, _converted
    from pipeline.converters import ConversionOptions

    log = tmp_path / "convert.log"
    result = _converted(CrashingConverter(), Strategy("default", ConversionOptions(), "why"), tmp_path / "m.onnx",
                        tmp_path / "default", log, Limits(8 * 2**30, 60), None)
    assert result.notes[0].startswith("the conversion process crashed in native code (signal 11, SIGSEGV)")
    assert "converted again in a new process with TensorFlow's oneDNN kernels off" in result.notes[0]
    assert result.notes[1:] == ["made"]
    assert "converting again with TensorFlow's oneDNN kernels off" in log.read_text()
    try:  # later children of this run (layer model, fp16 cure, repair candidates) start without oneDNN too
        assert run_isolated(crash_unless_onednn_is_off, (), Limits(8 * 2**30, 60), "layer model") == "converted"
    finally:
        isolate._kept_environment.clear()  # noqa: SLF001 (one model per process in real runs; tests share one)


def test_what_a_killed_child_leaves_in_its_temporary_folder_goes_when_the_parent_exits(tmp_path):
    """A child is stopped with SIGKILL, so TensorFlow's exit handlers, which delete AutoGraph's generated
    files, never run in it: the child's TMPDIR is the parent's folder, removed when the parent exits."""
    code = ("import tempfile; from pipeline.convert.isolate import Limits, run_isolated; "
            "print(run_isolated(tempfile.mkdtemp, (), Limits(8 * 2**30, 60), 'strategy x'))")
    env = {**os.environ, "TMPDIR": str(tmp_path)}
    made = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, env=env,
                          check=True).stdout.strip().splitlines()[-1]
    assert os.path.dirname(os.path.dirname(made)) == str(tmp_path)
    assert os.path.basename(os.path.dirname(made)).startswith("pipeline-children-")
    assert list(tmp_path.iterdir()) == []  # the child's folder went with the parent's
