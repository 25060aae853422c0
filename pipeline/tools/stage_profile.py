"""`python -m pipeline.tools.stage_profile STEPS.json COMMAND ...`: `python -m pipeline COMMAND ...` in this
process, run exactly as `python -m pipeline` runs it, with its profile steps written to STEPS.json as it exits.

A stage run alone (`python -m pipeline audit`) writes no profile.json; `make bench` reads where such an audit's
time went (the fp16 storage reference, each extra shape, the TFLite files read layer by layer) from STEPS.json.
"""
from pipeline import profile  # first: it notes when the process started

import atexit  # noqa: E402
import runpy  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402


def main() -> None:
    if len(sys.argv) < 3:
        raise SystemExit("usage: python -m pipeline.tools.stage_profile STEPS.json COMMAND [ARGS...]")
    target = Path(sys.argv[1]).resolve()
    sys.argv = ["python -m pipeline", *sys.argv[2:]]
    # pipeline/__main__.py runs the exit handlers, then leaves with os._exit: the steps are written there.
    atexit.register(lambda: profile.write(target.parent, time.time(), file_name=target.name))
    runpy.run_module("pipeline", run_name="__main__", alter_sys=True)


if __name__ == "__main__":
    main()
