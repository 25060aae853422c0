import atexit
import logging
import os
import signal
import sys
import time

from pipeline import profile  # first: it notes when the process started
from pipeline import process  # noqa: E402
from pipeline.cli import main  # noqa: E402
from pipeline.console import console


def _leave(code: int) -> None:
    console.file.flush()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


profile.record("startup: interpreter and imports", profile.STARTED, time.time())
process.own()
code = main()
# The result is decided and written: Ctrl-C or SIGTERM during the teardown below ends the process with it
# (the default action would report death by signal for a run that finished).
for number in (signal.SIGINT, signal.SIGTERM):
    signal.signal(number, lambda *_: _leave(code))
# Leave without the interpreter's teardown of torch, TensorFlow and ONNX Runtime: it took 1.6-2.6 s
# after every run (measured; the work was done). What an orderly exit does for us still runs first:
# the exit handlers (Ray's shutdown, temporary folders, multiprocessing), logging, the streams.
atexit._run_exitfuncs()  # noqa: SLF001 (the documented handlers, run the way sys.exit would)
logging.shutdown()
_leave(code)
