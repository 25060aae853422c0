"""The float64 oracle's runs, started while the conversion runs.

The oracle (a float64 copy of the PyTorch model and its perturbed twins, pipeline/audit/noise.py) needs
the model and the inputs, nothing the conversion makes. In a full run the parent only waits while its
conversion child converts, with a core idle: the orchestrator starts the oracle's runs then, in a thread
(PyTorch's kernels release the GIL), and the audit takes them when it needs them. It takes them only for
the same model and the same inputs, value for value; otherwise (a stage run alone, `--samples`,
`--inputs`, a run whose ahead runs failed) it runs them itself, as before. Either way the same runners
run the same samples in the same order: the numbers are the same.
"""
from __future__ import annotations

import hashlib
import threading
from dataclasses import dataclass
from typing import Callable

import numpy as np

from pipeline.artifacts.folder import ArtifactDir
from pipeline.artifacts.records import ExportRecord
from pipeline.compare import RunResults, run_sets
from pipeline.config import Source
from pipeline.audit.noise import PERTURBATION_SEEDS
from pipeline.names import Backend
from pipeline.runners.factory import make_runner, perturbed_oracle

Runs = tuple[list[RunResults], list[dict[str, str]]]  # per input set: backend -> outputs; backend -> why it failed


def runners(source: Source, artifacts: ArtifactDir, export: ExportRecord) -> list:
    """The float64 oracle and its perturbed twins (one per seed of PERTURBATION_SEEDS)."""
    return [make_runner(Backend.ORACLE, source, artifacts, export)] + [perturbed_oracle(source, export, seed)
                                                                       for seed in PERTURBATION_SEEDS]


@dataclass(frozen=True)
class _Key:
    """What the oracle's outputs depend on: the model (its config and file) and every input value."""

    model: tuple
    inputs: str

    @classmethod
    def of(cls, source: Source, export: ExportRecord, feed_sets: list[list[dict]]) -> "_Key":
        digest = hashlib.sha256()
        for feeds in feed_sets:
            for feed in feeds:
                for name in sorted(feed):
                    value = np.ascontiguousarray(feed[name])
                    digest.update(f"{name}:{value.dtype.str}:{value.shape};".encode())
                    digest.update(value.tobytes())
        model = (str(source.path), source.config.model_dump_json() if source.config else "", tuple(export.outputs))
        return cls(model, digest.hexdigest())


class _Cancelled(Exception):
    """Raised between two samples of a run started ahead that is no longer wanted."""


class _Ahead:
    """The oracle's runs in a thread; their result, or the exception that stopped them."""

    def __init__(self, key: _Key, work: Callable[[Callable[[str, int], None]], Runs]) -> None:
        self.key = key
        self.runs: Runs | None = None
        self.error: BaseException | None = None
        self._cancelled = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(work,), name="oracle-ahead", daemon=True)
        self._thread.start()

    def _run(self, work) -> None:
        try:
            self.runs = work(self._between_samples)
        except BaseException as exc:  # noqa: BLE001 - kept for the record: the audit then runs them itself
            self.error = exc

    def _between_samples(self, backend: str, index: int) -> None:
        if self._cancelled.is_set():
            raise _Cancelled(f"{backend}: stopped after sample {index}: the run no longer needs it")

    def wait(self) -> None:
        self._thread.join()

    def cancel(self) -> None:
        """Stop after the sample being run (one forward pass) and wait for it: PyTorch is never left running in
        a thread while the process exits."""
        self._cancelled.set()
        self._thread.join()


_ahead: _Ahead | None = None


def start(source: Source, artifacts: ArtifactDir, export: ExportRecord, feed_sets: list[list[dict]]) -> None:
    """Start the oracle's runs on these input sets, in a thread; runs already started for exactly these (a
    conversion stage run again after a fallback) are kept, others stopped. Nothing for the ONNX route (its
    oracle is the ONNX graph in float64, run in the audit)."""
    global _ahead
    key = _Key.of(source, export, feed_sets) if export.reference == "pytorch" and source.config is not None else None
    if key is not None and _ahead is not None and _ahead.key == key:
        return
    discard()
    if key is not None:
        _ahead = _Ahead(key, lambda between: run_sets(runners(source, artifacts, export), feed_sets, between))


def wait() -> None:
    """Let runs started ahead finish (before anything else uses PyTorch's process-wide settings, a re-export)."""
    if _ahead is not None:
        _ahead.wait()


def discard() -> None:
    """Stop runs started ahead that nothing took (a run that stopped before its audit), and drop them."""
    global _ahead
    ahead, _ahead = _ahead, None
    if ahead is not None:
        ahead.cancel()


def take(source: Source, export: ExportRecord, feed_sets: list[list[dict]]) -> Runs | None:
    """The runs started ahead, once finished, when they were for this model and exactly these inputs; None
    otherwise (the caller runs them; runs for other inputs are stopped, not waited for). Taken once. Until
    they have finished they stay `discard()`'s to stop (an interrupt while waiting here)."""
    global _ahead
    ahead = _ahead
    if ahead is None:
        return None
    if ahead.key != _Key.of(source, export, feed_sets):
        discard()
        return None
    ahead.wait()
    _ahead = None
    return ahead.runs
