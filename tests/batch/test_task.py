"""The task's supervision on real child processes: memory limit, timeout, signals, error lines."""
import signal
import sys

import psutil

from pipeline.batch.result import CRASHED, OUT_OF_MEMORY, STAGE_FAILED, TIMEOUT
from pipeline.batch.task import Ended, describe, run_task, supervise
from tests.batch.support import specs_for, write_config


def _running(marker: str) -> list[psutil.Process]:
    return [p for p in psutil.process_iter(["cmdline"]) if marker in " ".join(p.info["cmdline"] or [])]


def test_an_impossible_memory_limit_kills_the_run_with_its_reason(tmp_path):
    (spec,) = specs_for([write_config(tmp_path / "cfg", "tiny_budget")], tmp_path / "batch", memory=50 * 2**20)
    on_sigint = signal.getsignal(signal.SIGINT)
    result = run_task(spec)
    assert result.verdict == OUT_OF_MEMORY and not result.has_report
    assert "over the 0.05 GB memory limit" in result.reason
    assert result.peak_rss_mb > 50
    assert not _running(str(spec.artifacts))
    assert signal.getsignal(signal.SIGINT) == on_sigint  # our own kill is no interrupt of this process


def test_a_timeout_stops_the_whole_process_group(tmp_path):
    (spec,) = specs_for([write_config(tmp_path / "cfg", "too_slow")], tmp_path / "batch", timeout_s=2.0)
    result = run_task(spec)
    assert result.verdict == TIMEOUT
    assert "2 s timeout" in result.reason
    assert not _running(str(spec.artifacts))
    assert not list(spec.root.glob(".too_slow.run-*"))  # the child cleaned its fresh folder on SIGTERM


def test_a_child_killed_by_a_signal_is_a_crash(tmp_path):
    (spec,) = specs_for([write_config(tmp_path, "m")], tmp_path / "batch")
    with open(tmp_path / "log", "wb") as log:
        ended = supervise([sys.executable, "-c", "import os, signal; os.kill(os.getpid(), signal.SIGSEGV)"], log, 60, None)
    assert ended.returncode == -signal.SIGSEGV
    result = describe(spec, ended, 1.0)
    assert (result.verdict, result.reason) == (CRASHED, "killed by SIGSEGV")


def test_a_failed_stage_keeps_the_pipelines_error_line(tmp_path):
    (spec,) = specs_for([write_config(tmp_path, "m")], tmp_path / "batch")
    spec.log.parent.mkdir(parents=True)
    spec.log.write_text("noise\nerror: every conversion strategy failed (default, ...)\n")
    result = describe(spec, Ended(3, None, 2**30), 5.0)
    assert result.verdict == STAGE_FAILED
    assert result.reason == "error: every conversion strategy failed (default, ...)"
    assert result.peak_rss_mb == 1024.0
