"""onnx2tf's `onnxsim` CLI calls, served by one warm process per conversion.

onnx2tf simplifies its input by running the `onnxsim` command three times in a row, each a new
Python interpreter that imports onnx, onnxruntime and onnxsim before it simplifies anything: about
0.4 s a call on this machine, 1.2 s a conversion, most of it on the critical path of a small model
(seed_ym: 0.9 s of a 1.9 s conversion). Inside `onnxsim_worker()`, onnx2tf's
`subprocess.check_output(["onnxsim", ...])` goes to one process, started when the conversion starts
(or ahead of it: `start_ahead`, which a conversion child calls during its warm-up, while the parent
exports), that runs the same CLI entry point (`onnxsim.main`, with the same arguments, hence the same
defaults and the same simplify call): the file written is the same as the command's, byte for byte
(tests/converters/test_onnxsim_worker.py). A call on the bytes a call before it left unchanged, with the same
arguments, is not run: it gets that call's output (_Subprocess._remember). It cannot run in the conversion process itself: onnxsim's
C++ extension and TensorFlow's, loaded together, crash it (exit -11, seen on seed_ym).

Every call skips onnxsim's optimizer passes that change what a graph computes (UNSAFE_PASSES); otherwise
the arguments are onnx2tf's. What onnx2tf relies on is kept: the CLI's output comes back as bytes, and a failing simplification
(or a crash of the worker) raises CalledProcessError, which onnx2tf catches, notes in its log, and
then converts the unsimplified file. Once the worker is gone, calls run as real subprocesses again;
every other subprocess call always does. The worker ends one second after a call with no next one
(onnx2tf's three come back to back), so the memory of a large model's simplification is not held
through the rest of the conversion (full-size ResNet-50: 7.9 GB peak with the worker kept, 7.2 GB
with three subprocesses), and at the latest with the conversion.
"""
from __future__ import annotations

import contextlib
import io
import multiprocessing
import os
import subprocess
import sys
import threading
import traceback
from multiprocessing.connection import Connection
from pathlib import Path
from types import ModuleType
from typing import Any, Iterator

from pipeline.patching import replaced
from pipeline.process import Spare

STOP_SECONDS = 5.0
IDLE_SECONDS = 1.0  # a worker with no call for this long ends: onnx2tf has finished simplifying
PACKAGE_ROOT = Path(__file__).resolve().parents[2]  # where `pipeline` is importable from


@contextlib.contextmanager
def onnxsim_worker(enabled: bool = True, module: ModuleType | None = None) -> Iterator[None]:
    """Inside the block, subprocess.check_output(["onnxsim", ...]) in `module` (onnx2tf's converter module
    unless given) is served by one warm worker process; nothing changes unless `enabled` (onnx2tf will
    simplify)."""
    if not enabled:
        _ahead.discard()  # a worker started for it would hold memory through the conversion
        yield
        return
    if module is None:
        import onnx2tf.onnx2tf as module
    worker = _ahead.take() or _Worker()  # a new one imports onnxsim while onnx2tf reads the model
    try:
        with replaced(module, "subprocess", _Subprocess(module.subprocess, worker)):
            yield
    finally:
        worker.stop()


def start_ahead() -> None:
    """Start the next conversion's worker now, so that its imports (0.3 s) are not on the conversion's
    path: a conversion child calls it during its warm-up (converters/onnx2tf_v1.py: warm_up)."""
    _ahead.keep(_Worker)


class _Subprocess:
    """The subprocess module, except for check_output of the onnxsim command."""

    def __init__(self, real: ModuleType, worker: "_Worker") -> None:
        self._real, self._worker = real, worker
        self._unchanged: tuple | None = None  # ((cwd, argv, file digest), output) of the last call, if it changed nothing

    def __getattr__(self, name: str) -> Any:
        return getattr(self._real, name)

    def check_output(self, args, **kwargs) -> bytes:
        if isinstance(args, (list, tuple)) and args and args[0] == "onnxsim":
            args = without_unsafe_passes([str(a) for a in args])
            call = (os.getcwd(), args, _in_place_digest(args))
            if call[2] is not None and self._unchanged is not None and self._unchanged[0] == call:
                return self._unchanged[1]  # see _remember
            out = self._worker.run(args)
            if out is not None:
                self._remember(call, out)
                return out
        return self._real.check_output(args, **kwargs)

    def _remember(self, call: tuple, out: bytes) -> None:
        """Keep a call that simplified a file in place and left it as it was: onnx2tf simplifies three times in
        a row, and a model is usually a fixed point of onnxsim after the first (RegNet-400MF: 0.2 s a call).
        onnxsim is a function of its arguments and its input file, so the same command on the same bytes
        writes the same file and prints the same: check_output answers it with this call's output."""
        _, argv, digest = call
        unchanged = digest is not None and _in_place_digest(argv) == digest
        self._unchanged = (call, out) if unchanged else None


def _in_place_digest(argv: list[str]) -> str | None:
    """sha256 of the file an `onnxsim IN OUT ...` call with IN == OUT reads and rewrites; None for other calls."""
    from pipeline.artifacts.folder import sha256

    if len(argv) < 3 or argv[1] != argv[2] or argv[1].startswith("-") or not os.path.isfile(argv[1]):
        return None
    return sha256(Path(argv[1]))


# onnxsim's optimizer passes that change what a graph computes. fuse_pad_into_pool folds a constant Pad into
# the MaxPool after it, as the pool's own padding, whatever the Pad's value: a MaxPool's padding is -inf,
# so a zero pad (BiT's stem, HF's BitMaxPool2d) becomes -inf and every window at the padded border that held
# only negatives and a 0 now gives a negative (ONNX Runtime on onnxsim's output: 3.55 off on BiT's stem).
UNSAFE_PASSES = ("fuse_pad_into_pool",)


def without_unsafe_passes(argv: list[str]) -> list[str]:
    """The onnxsim command line, skipping UNSAFE_PASSES (as long as it names no optimizer to skip itself)."""
    if any(arg in ("--skip-optimization", "--skip-optimizer") for arg in argv):
        return argv
    return [*argv, "--skip-optimization", *UNSAFE_PASSES]


class _Worker:
    """`python -m pipeline.converters.onnxsim_worker FD`: a plain process (the conversion child is a daemonic
    multiprocessing process, which may not start multiprocessing children), talking over a socket pair."""

    def __init__(self) -> None:
        self._conn, child_end = multiprocessing.Pipe()
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(PACKAGE_ROOT), os.environ.get("PYTHONPATH")]))}
        self._process = subprocess.Popen([sys.executable, "-m", __name__, str(child_end.fileno())],
                                         pass_fds=[child_end.fileno()], env=env, stdin=subprocess.DEVNULL)
        child_end.close()
        self._lock = threading.Lock()
        self._idle: threading.Timer | None = None

    def alive(self) -> bool:
        return self._process.poll() is None

    def run(self, argv: list[str]) -> bytes | None:
        """The command's output, or CalledProcessError as the command would have raised it; None once the
        worker is gone (then the command runs as a subprocess)."""
        with self._lock:
            if self._idle is not None:
                self._idle.cancel()
            if not self.alive():
                return None
            try:
                self._conn.send((os.getcwd(), argv))  # relative paths mean what they mean here
                kind, code, out, err = self._conn.recv()
            except (EOFError, OSError) as exc:  # the worker died mid-call (a crash inside onnxsim)
                code = self._process.wait()
                raise subprocess.CalledProcessError(code or 1, argv, b"",
                                                    f"the onnxsim worker ended ({type(exc).__name__})".encode()) from None
            # onnx2tf's calls come back to back; after them, the worker (and the model's memory in it) goes
            self._idle = threading.Timer(IDLE_SECONDS, self.stop)
            self._idle.daemon = True
            self._idle.start()
        if kind != "ok":
            raise subprocess.CalledProcessError(code, argv, out, err)
        return out

    def stop(self) -> None:
        with self._lock:
            if self._idle is not None:
                self._idle.cancel()
            self._conn.close()  # the worker's loop ends at EOF
            try:
                self._process.wait(STOP_SECONDS)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait()


_ahead: Spare[_Worker] = Spare()  # the next conversion's worker, when a conversion child started it


def serve(fd: int) -> None:
    """The worker: onnxsim imported before the first call, then one CLI run per request until EOF."""
    import onnxsim  # noqa: F401

    conn = Connection(fd)
    while True:
        try:
            cwd, argv = conn.recv()
        except (EOFError, OSError):  # the conversion is over
            return
        os.chdir(cwd)
        conn.send(run_cli(argv))


def run_cli(argv: list[str]) -> tuple[str, int, bytes, bytes]:
    """`onnxsim` with argv[1:], as its console script runs it: ("ok" or "failed", exit code, stdout, stderr)."""
    import onnxsim

    out, err = io.StringIO(), io.StringIO()
    with replaced(sys, "argv", argv), contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = onnxsim.main()
        except SystemExit as exc:  # argparse and sys.exit(): the exit code the command would have had
            code = exc.code
        except Exception:  # the command would have printed the traceback and exited with 1
            err.write(traceback.format_exc())
            code = 1
    code = 0 if code is None else code if isinstance(code, int) else 1
    return ("ok" if code == 0 else "failed"), code, out.getvalue().encode(), err.getvalue().encode()


if __name__ == "__main__":
    serve(int(sys.argv[1]))
