"""The first conversion strategy, started as soon as model.onnx exists.

A full run has nothing for the converter to wait for once the export is written: validate and
lint only read the ONNX file. So the first strategy's conversion starts then, in its child
process (prewarmed during the export), and runs while validate and lint do. Its files stay in
a hidden folder of the run folder; the convert stage takes them only after validate and lint
finished, so nothing reaches the artifact folder out of order. A run that stops before the
convert stage (a failed checker, an interrupt) discards them and stops the child.

A head start is used only for the file it converted: a re-export (a fallback) changes the
file, and the convert stage then converts the new one itself.
"""
from __future__ import annotations

import dataclasses
import os
import shutil
import threading
import time
from pathlib import Path

from pipeline.artifacts.folder import ArtifactDir, identity
from pipeline.convert.isolate import Limits, run_kept
from pipeline.runners import remote
from pipeline.converters import ConversionOptions, ConversionResult
from pipeline.errors import ConversionError

FOLDER = ".convert-head-start"


class HeadStart:
    def __init__(self, converter, strategy: str, options: ConversionOptions, artifacts: ArtifactDir, limits: Limits,
                 why: str) -> None:
        self.strategy, self.why = strategy, why
        self.onnx = artifacts.onnx
        self._identity = identity(self.onnx)
        self.folder = artifacts.root / FOLDER
        shutil.rmtree(self.folder, ignore_errors=True)
        self.folder.mkdir()
        self.out_dir, self.log = self.folder / strategy, self.folder / "convert.log"
        self.out_dir.mkdir()
        self.log.write_text(f"\n===== strategy '{strategy}': {why} (started right after the export) =====\n")
        self._result: ConversionResult | None = None
        self._error: ConversionError | None = None
        self._worker = None  # the child, kept after a successful conversion: the run's TF worker
        self.seconds = 0.0
        args = (self.onnx, self.out_dir, self.log, options)
        self._thread = threading.Thread(target=self._convert, args=(converter.convert, args, limits), daemon=True)
        self._thread.start()

    def _convert(self, convert, args: tuple, limits: Limits) -> None:
        start = time.perf_counter()
        try:
            self._result, self._worker = run_kept(convert, args, limits, f"strategy '{self.strategy}'")
        except ConversionError as exc:
            self._error = exc
        finally:
            self.seconds = time.perf_counter() - start

    def serves(self, strategy: str, onnx_path: Path) -> bool:
        """Whether this head start converted exactly this file with this strategy."""
        return (strategy == self.strategy and onnx_path == self.onnx and onnx_path.exists()
                and identity(onnx_path) == self._identity)

    def take(self, out_dir: Path, log_path: Path) -> ConversionResult:
        """Wait for the conversion; move its files to out_dir and its log into log_path.
        Raises its ConversionError when it failed."""
        self._thread.join()
        with log_path.open("a") as log:
            log.write(self.log.read_text(errors="replace"))
        if self._error is not None:
            raise self._error
        os.replace(self.out_dir, out_dir)
        if self._worker is not None:  # from now on TensorFlow runs there (runners/remote.py)
            remote.attach(self._worker, self.folder.parent / remote.LOG)
            self._worker = None
        return relocated(self._result, self.out_dir, out_dir)

    def discard(self) -> None:
        """Stop the conversion if it still runs (its child is killed) and remove its files."""
        from pipeline.convert import isolate

        isolate.stop_running()
        self._thread.join(10)
        if self._worker is not None:  # never taken: its conversion is not used
            self._worker.stop()
            self._worker = None
        shutil.rmtree(self.folder, ignore_errors=True)


def relocated(result: ConversionResult, old: Path, new: Path) -> ConversionResult:
    """The same result with its paths under `new` instead of `old`."""
    move = lambda p: new / p.relative_to(old) if p else None  # noqa: E731
    return dataclasses.replace(result, saved_model=move(result.saved_model), keras=move(result.keras),
                               tflite={k: move(v) for k, v in result.tflite.items()})
