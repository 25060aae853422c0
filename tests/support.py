"""Helpers shared by tests (kept out of conftest.py so tests can import them)."""
from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


class NetworkBlocked(RuntimeError):
    pass


def refuse_network(*args, **kwargs):
    raise NetworkBlocked(f"network access attempted: {args[0] if args else kwargs}")


def swallow_signal(number: int) -> None:
    """The signal arrives (sent to this process) and library code swallows its KeyboardInterrupt."""
    try:
        os.kill(os.getpid(), number)
        time.sleep(5)  # the handler raises here
    except KeyboardInterrupt:
        pass


@dataclass
class Run:
    exit_code: int
    root: Path

    @property
    def report(self) -> dict:
        return json.loads((self.root / "report.json").read_text())


def run_cli(*argv: str) -> int:
    from pipeline.cli import main

    return main(list(argv))


def write_config(path: Path, model: str, inputs: list[dict], **keys) -> Path:
    """Write a model config (YAML) to `path`: the factory, the inputs ({name, shape, …}) and any other keys.
    The one config builder of the tests; returns the path."""
    import yaml

    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump({"model": model, "inputs": inputs, **keys}, sort_keys=False))
    return path
