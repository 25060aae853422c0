"""`make suite`: the ONNX backend test cases shipped inside onnx, through the ONNX route.

Each case in `onnx/backend/test/data/{pytorch-converted,pytorch-operator}` is a
`model.onnx` plus `test_data_set_0/{input,output}_<i>.pb`. A case is imported the way
`python -m pipeline convert FILE.onnx` imports it (opset < 7 upgraded) and converted the way
the convert stage converts it: its strategy list in order (onnx2tf 1.x's strategies, then
onnx2tf 2.x), until one converts and its layouts bind like the convert stage binds them. That
strategy's SavedModel and TFLite fp32 models are run on the stored inputs and compared with the
stored expected outputs at the fp32 tolerance, and on the ONNX route's own samples (seeded uniform
inputs of the stored shapes and dtypes in [0, 1), and the zeros, constant and largest-magnitude edge
cases, as `pipeline convert FILE.onnx` audits) against ONNX Runtime's outputs on the case's own
model.onnx (on the imported file when ONNX Runtime cannot run the original's opset; a note says so).
An output fails when either comparison fails; it passes when one passes and neither fails, so a
stored output with no evidence (all zeros, or NaN from uninitialised inputs) is judged on the
generated inputs, never passed by itself. When ONNX Runtime cannot run the generated inputs (an
input that must hold valid indices or a shape), only the stored data judges, and a note says so.
When they fail, the other converter's strategy
runs and is judged the same way, as the repair's first candidate runs after the audit caught a
model wrong; the files that pass are the case's (else the first converter's stay). Each case
records every strategy's outcome and which converter and strategy made the judged files. A
converter that cannot run here (no .venv312 for onnx2tf 2.x) is left out, and the report says so.

Every case runs in this one process, one after another, so TensorFlow is imported once (the
conversions too: without the convert stage's per-attempt child and limits; onnx2tf 2.x runs in
its own side-environment process all the same). A failing case is recorded (stage, exception
type, first line, category) and the suite goes on. Results go to `<out>/suite.json`
(rewritten after every case, so an interrupted run keeps what it measured) and to a markdown
report (SUITE.md).
"""
from __future__ import annotations

import argparse
import contextlib
import math
import os
import re
import shutil
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

import numpy as np
import onnx
from onnx import numpy_helper
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from pipeline.artifacts.folder import DEFAULT_ROOT, REPO_ROOT
from pipeline import inputs as shared_inputs
from pipeline.compare import Comparison, Tolerance, compare_arrays, not_run, overall_verdict, tolerance_for
from pipeline.console import capture_output, console
from pipeline.convert.rewrite import prepared_on
from pipeline.convert.stage import Strategy, bind, strategies
from pipeline.converters import ConversionResult, Converter, get_converter
from pipeline.errors import EXIT_INTERRUPTED, ConversionError, PipelineError, RunnerError, UsageError, ValidationError, first_line
from pipeline.inputs import TensorSpec
from pipeline.model.onnx_import import default_opset, import_onnx, load_onnx
from pipeline.runners.base import Runner
from pipeline.runners.onnxrt import OnnxRuntimeRunner
from pipeline.runners.tensorflow import TFLiteRunner, TFSavedModelRunner
from pipeline.runners.tf_io import TFModelIO
from pipeline.tools.suite_report import (AGAINST_IMPORTED, FOLDERS, LAYOUT, NO_STORED_EVIDENCE, NOT_JUDGED, NUMERIC,
                                         OLD_OPSET, OTHER, RAISED, UNSUPPORTED, CaseResult,
                                         Failure, OutputCheck, StrategyRun, SuiteReport, print_summary, summarize,
                                         write_json, write_markdown)

REFERENCE = "expected"  # the stored output_<i>.pb files
GENERATED_REFERENCE = "onnxruntime"  # ONNX Runtime on the case's own file (else the imported one), for the generated inputs
GENERATED_SAMPLES, GENERATED_SEED = 4, 0  # random samples before the three edge cases
DEFAULT_OUT = DEFAULT_ROOT / "suite"
DEFAULT_MARKDOWN = REPO_ROOT / "SUITE.md"

# Comparison reasons (pipeline.compare's, and _check's prefixes) that mean the shapes or the
# element order, not the values, disagree.
PERMUTED = "element order differs"
LAYOUT_REASONS = ("shape mismatch", "candidate has no such output", "layout unresolved", PERMUTED)
OPSET_WORD = re.compile(r"\bopset\b", re.IGNORECASE)


class CaseDataError(PipelineError):
    """A test case's stored data does not fit its model (missing or extra .pb files)."""


# --- cases ---------------------------------------------------------------------------

@dataclass(frozen=True)
class Case:
    """One backend test case: a folder holding model.onnx and test_data_set_0/."""

    folder: str  # pytorch-converted | pytorch-operator
    name: str  # test_Conv2d_strided, ...
    path: Path

    @property
    def id(self) -> str:
        return f"{self.folder}/{self.name}"

    @property
    def model(self) -> Path:
        return self.path / "model.onnx"


@dataclass(frozen=True)
class CaseData:
    """Stored feeds and expected outputs, keyed by graph input/output name, in graph order."""

    inputs: dict[str, np.ndarray]
    outputs: dict[str, np.ndarray]
    opset: int  # the file's default-domain opset, before any upgrade


def backend_test_data() -> Path:
    """The backend test data shipped inside the installed onnx package."""
    return Path(onnx.__file__).parent / "backend" / "test" / "data"


def discover(root: Path, filters: tuple[str, ...] = (), limit: int | None = None) -> list[Case]:
    """Cases under root's FOLDERS, sorted by folder then name; a case is kept when its id
    ('folder/name') contains any of `filters` (all when there are none); at most `limit`."""
    cases = [Case(folder, path.name, path) for folder in FOLDERS if (root / folder).is_dir()
             for path in sorted((root / folder).iterdir()) if (path / "model.onnx").is_file()]
    picked = [case for case in cases if not filters or any(f in case.id for f in filters)]
    return picked[:limit] if limit is not None else picked


def load_case(case: Case) -> CaseData:
    """Read input_<i>.pb / output_<i>.pb and name them after the graph's inputs (initializers
    excluded: old files list them as inputs too) and outputs, position by position."""
    model = load_onnx(case.model)
    graph = model.graph
    initializers = {init.name for init in graph.initializer}
    data_set = case.path / "test_data_set_0"
    inputs = _read_tensors(data_set, "input", [v.name for v in graph.input if v.name not in initializers])
    outputs = _read_tensors(data_set, "output", [v.name for v in graph.output])
    return CaseData(inputs, outputs, default_opset(model))


def _read_tensors(folder: Path, kind: str, names: list[str]) -> dict[str, np.ndarray]:
    files = sorted(folder.glob(f"{kind}_*.pb"), key=lambda p: int(p.stem.rsplit("_", 1)[1]))
    if len(files) != len(names):
        raise CaseDataError(f"{folder}: {len(files)} {kind}_*.pb files for the graph's {len(names)} {kind}s {names}")
    return {name: read_tensor(path) for name, path in zip(names, files)}


def read_tensor(path: Path) -> np.ndarray:
    tensor = onnx.TensorProto()
    tensor.ParseFromString(path.read_bytes())
    return numpy_helper.to_array(tensor)


# --- categories ----------------------------------------------------------------------

def categorize(failure: Failure) -> str:
    """The category of a failed case. Rules, in order:

    - old opset: onnx's version converter could not upgrade the file (a ValidationError while
      importing), or the conversion failed with an error that names the opset;
    - unsupported by converter: the conversion failed (a ConversionError while converting), or the
      converter could only express an op with Select TF ops, which TFLite cannot run without the
      Flex delegate;
    - layout: the converted model's input/output count differs from the ONNX model's (a
      ConversionError while binding), or a comparison failed on shape, a missing output or an
      unresolved layout, or the output holds the expected values in another order (a
      transposition inside the converted graph, e.g. a channel-last Flatten);
    - numeric mismatch: it converted and ran, and some value is beyond tolerance (or NaN/Inf);
    - other: anything else (the failure's type and message say what).
    """
    if failure.stage == "import" and failure.error == ValidationError.__name__:
        return OLD_OPSET
    if failure.stage == "convert" and failure.error == ConversionError.__name__:
        return OLD_OPSET if OPSET_WORD.search(failure.message) else UNSUPPORTED
    if failure.stage == "bind" and failure.error == ConversionError.__name__:
        return LAYOUT
    if "Select TF ops" in failure.message or "Select TensorFlow op" in failure.message:
        return UNSUPPORTED
    if failure.stage == "compare":
        return LAYOUT if failure.message.startswith(LAYOUT_REASONS) else NUMERIC
    return OTHER


# --- converters ----------------------------------------------------------------------

@dataclass(frozen=True)
class Converters:
    """The converters the convert stage's strategy list names that can run here (by registry name), and
    why the others cannot (one line each: their strategies are left out, and the report says so)."""

    available: dict[str, Converter]
    unavailable: tuple[str, ...] = ()

    @classmethod
    def here(cls) -> "Converters":
        listed = {name: get_converter(name) for name in dict.fromkeys(s.converter for s in strategies([]))}
        why = {name: converter.available() for name, converter in listed.items()}
        return cls({n: c for n, c in listed.items() if not why[n]}, tuple(w for w in why.values() if w))

    def strategies(self, specs: list[TensorSpec]) -> list[Strategy]:
        """The convert stage's strategies for these inputs, in its order, those of available converters."""
        return [s for s in strategies(specs) if s.converter in self.available]

    def label(self, strategy: Strategy) -> str:
        converter = self.available[strategy.converter]
        return f"{converter.label} {converter.version()}"

    def labels(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(self.label(s) for s in self.strategies([])))


# --- running one case ----------------------------------------------------------------

class StageFailed(Exception):
    """A case stopped at one stage; carries the Failure record."""

    def __init__(self, failure: Failure) -> None:
        super().__init__(f"{failure.stage}: {failure.error}: {failure.message}")
        self.failure = failure


@contextlib.contextmanager
def stage(name: str) -> Iterator[None]:
    """Turn whatever a stage raises into StageFailed, so one case cannot stop the suite."""
    try:
        yield
    except PipelineError as exc:  # the pipeline's typed errors: the failures we expect
        raise StageFailed(Failure(name, type(exc).__name__, first_line(exc) or type(exc).__name__)) from exc
    except (Exception, SystemExit) as exc:  # onnx, onnx2tf and TF raise (or exit) with anything
        raise StageFailed(Failure(name, type(exc).__name__, first_line(exc) or repr(exc), expected=False)) from exc


@dataclass
class _Run:
    """One strategy's try on a case (filled stage by stage)."""

    strategy: Strategy
    converter: str  # "onnx2tf 1.29.24"
    checks: list[OutputCheck] = field(default_factory=list)
    failures: list[Failure] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    unresolved: set[str] = field(default_factory=set)  # outputs whose layout could not be decided
    seconds: float = 0.0

    @property
    def outcome(self) -> str:
        """raised (it did not convert, or did not bind), fail, inconclusive or pass: each backend's output
        passes when the stored or the generated inputs' comparison passes (and none failed)."""
        if any(f.stage in CONVERTING for f in self.failures):
            return RAISED
        if self.failures:
            return "fail"
        judged: dict[tuple[str, str], list[str]] = {}
        for check in self.checks:
            judged.setdefault((check.backend, check.output), []).append(check.verdict)
        return overall_verdict(["pass" if "pass" in verdicts else overall_verdict(verdicts) for verdicts in judged.values()])

    def record(self) -> StrategyRun:
        return StrategyRun(self.strategy.name, self.converter, self.outcome, round(self.seconds, 2),
                           tuple(self.failures), tuple(self.checks))


CONVERTING = ("convert", "bind")  # a failure here sends the convert stage on to its next strategy


@dataclass
class _Audit:
    """What one case produced so far: its import, and each strategy's run."""

    opset: int | None = None
    failures: list[Failure] = field(default_factory=list)  # before any conversion (load, import)
    notes: list[str] = field(default_factory=list)
    runs: list[_Run] = field(default_factory=list)
    judged: _Run | None = None  # the run whose files are the case's: None when every strategy raised


@dataclass(frozen=True)
class Generated:
    """The ONNX route's own samples for a case, with ONNX Runtime's outputs on them (stacked over samples)."""

    feeds: list[dict[str, np.ndarray]]
    expected: dict[str, np.ndarray]


@dataclass(frozen=True)
class _Job:
    """One imported case, ready for the strategies."""

    work: Path
    onnx: Path  # the imported (upgraded) file
    data: CaseData
    converters: Converters
    generated: Generated | None = None  # None when ONNX Runtime could not run them

    @property
    def specs(self) -> list[TensorSpec]:
        return stored_specs(self.data)


def stored_specs(data: CaseData) -> list[TensorSpec]:
    """Specs from the stored arrays: they are what runs (float64 inputs included)."""
    return [TensorSpec(name, tuple(array.shape), str(array.dtype)) for name, array in data.inputs.items()]


def run_case(case: Case, work: Path, converters: Converters) -> CaseResult:
    """Import, convert, bind, run and compare one case in `work` (emptied first); never raises
    for the case's own failures (KeyboardInterrupt still stops the suite)."""
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    start = time.perf_counter()
    audit = _Audit()
    try:
        with capture_output(work / "case.log"):  # TF and LiteRT print while loading models
            _audit(case, work, converters, audit)
    except StageFailed as exc:
        audit.failures.append(exc.failure)
    return _result(case, audit, time.perf_counter() - start)


def _audit(case: Case, work: Path, converters: Converters, audit: _Audit) -> None:
    with stage("load"):
        data = load_case(case)
        audit.opset = data.opset
    with stage("import"):
        imported = _import(case, work, audit)
    job = _Job(work, imported, data, converters, _generated(case, imported, data, audit))
    listed = converters.strategies(job.specs)
    audit.judged = _first_converted(listed, job, audit)
    if audit.judged is not None and audit.judged.outcome == "fail":
        audit.judged = _other_converter(listed, job, audit)


def _generated(case: Case, imported: Path, data: CaseData, audit: _Audit) -> Generated | None:
    """The generated samples and ONNX Runtime's outputs on them, on the case's own model.onnx (else, when it
    cannot run that opset, on the imported file, and a note says so); None, with a note, when no samples can
    be drawn for an input's dtype or ONNX Runtime runs neither file."""
    specs = stored_specs(data)
    undrawn = [f"{spec.name} ({spec.dtype})" for spec in specs if np.dtype(spec.dtype).kind not in "fiub"]
    if undrawn:
        audit.notes.append(f"{NOT_JUDGED}: the ONNX route draws no samples for {', '.join(undrawn)}")
        return None
    feeds = shared_inputs.feeds(shared_inputs.with_edge_cases(
        shared_inputs.generate(specs, GENERATED_SAMPLES, GENERATED_SEED), specs))
    failed = []
    for path in dict.fromkeys([case.model, imported]):
        try:
            with OnnxRuntimeRunner(path, specs, list(data.outputs)) as runner:
                outputs = [runner.infer(feed) for feed in feeds]
        except RunnerError as exc:
            failed.append(first_line(exc, 160))
            continue
        if path != case.model:
            audit.notes.append(f"{AGAINST_IMPORTED}: the case's own "
                               f"model.onnx does not run in it ({failed[0]})")
        return Generated(feeds, shared_inputs.stack(outputs))
    audit.notes.append(f"{NOT_JUDGED}: ONNX Runtime could not run them ({failed[-1]})")
    return None


def _first_converted(listed: list[Strategy], job: _Job, audit: _Audit) -> _Run | None:
    """The convert stage's loop: each strategy in turn until one converts and binds; that one's files judged."""
    for strategy in listed:
        run = _try(strategy, job)
        audit.runs.append(run)
        if run.outcome != RAISED:
            return run
    return None


def _other_converter(listed: list[Strategy], job: _Job, audit: _Audit) -> _Run:
    """The repair's first candidates when the audit caught a model wrong: the other converter's strategies
    (not the rewrite, not one that raised already), each judged; the first that passes replaces the
    wrong files, else they stay (the repair's layout candidates are not run here)."""
    wrong = audit.judged
    tried = {run.strategy.name for run in audit.runs}
    for strategy in [s for s in listed if s.converter != wrong.strategy.converter and s.name not in tried and not s.rewrite]:
        run = _try(strategy, job)
        audit.runs.append(run)
        if run.outcome in ("pass", "inconclusive"):
            return run
    return wrong


def _try(strategy: Strategy, job: _Job) -> _Run:
    """One strategy: convert into work/<strategy>, bind, then run both backends on the stored data."""
    run = _Run(strategy, job.converters.label(strategy))
    start = time.perf_counter()
    try:
        with stage("convert"):
            result = _convert(strategy, job, run)
        with stage("bind"):
            specs, io = _bind(result, job.data, run)
    except StageFailed as exc:
        run.failures.append(exc.failure)
    else:
        _judge(result, specs, io, job.data, run, job.generated)
    finally:
        _release_keras_state()
    run.seconds = time.perf_counter() - start
    return run


def _convert(strategy: Strategy, job: _Job, run: _Run) -> ConversionResult:
    """As the convert stage's attempt (a rewrite verified on the stored data first), in this process."""
    verified_on = ([job.data.inputs], {name: array[None] for name, array in job.data.outputs.items()}, REFERENCE)
    onnx_path, notes = prepared_on(strategy, job.onnx, job.work, verified_on)
    run.notes.extend(notes)
    out_dir = job.work / strategy.name
    out_dir.mkdir()
    log_path = job.work / "convert.log"
    with log_path.open("a") as log:
        log.write(f"\n===== {run.converter}, strategy '{strategy.name}': {strategy.why} =====\n")
    result = job.converters.available[strategy.converter].convert(onnx_path, out_dir, log_path, strategy.options)
    if "fp32" not in result.tflite:
        raise ConversionError(f"{run.converter} wrote no TFLite fp32 model; see {log_path}")
    return result


def _judge(result: ConversionResult, specs: list[TensorSpec], io: TFModelIO, data: CaseData, run: _Run,
           generated: Generated | None) -> None:
    names = list(data.outputs)
    runners = [TFSavedModelRunner(result.saved_model, io, specs, names),
               TFLiteRunner(result.tflite["fp32"], io, specs, names, "fp32")]
    for runner in runners:  # each backend is checked even when the other one fails
        try:
            _check_backend(runner, data, generated, run)
        except StageFailed as exc:
            run.failures.append(exc.failure)


def _import(case: Case, work: Path, audit: _Audit) -> Path:
    """The ONNX route's import (old opsets upgraded); returns the file to convert."""
    imported = import_onnx(case.model)
    audit.notes.extend(imported.notes)
    path = work / "model.onnx"
    onnx.save(imported.model, str(path))
    return path


def _bind(result: ConversionResult, data: CaseData, run: _Run) -> tuple[list[TensorSpec], TFModelIO]:
    """The convert stage's binding, with the stored data as the reference and first feed."""
    specs = stored_specs(data)
    reference = {name: array[None] for name, array in data.outputs.items()}
    io = bind(result, specs, list(data.outputs), reference, data.inputs)
    for binding in io.inputs + io.outputs:
        if binding.layout.ambiguous:
            run.notes.append(f"{binding.name}: {binding.layout.note or binding.layout.decided_by}")
    run.unresolved.update(b.name for b in io.outputs if b.layout.decided_by == "unresolved")
    return specs, io


def _check_backend(runner: Runner, data: CaseData, generated: Generated | None, run: _Run) -> None:
    """Run one backend (loaded once) on the stored inputs, then on the generated ones, and compare each output
    with the stored one and with ONNX Runtime's; a backend that cannot run fails its checks, as in the audit
    (pipeline.compare.not_run)."""
    tolerance = tolerance_for("tflite_fp32")
    try:
        with stage("run"), runner:
            stored = {name: value[None] for name, value in runner.infer(data.inputs).items()}
            made = shared_inputs.stack([runner.infer(feed) for feed in generated.feeds]) if generated else None
    except StageFailed as exc:
        run.failures.append(exc.failure)
        run.checks.extend(_check(not_run(REFERENCE, runner.name, name, tolerance, exc.failure.message), False, False)
                          for name in data.outputs)
        return
    with stage("compare"):
        _compare(runner.name, {name: array[None] for name, array in data.outputs.items()}, stored, "stored", run)
        if generated is not None:
            _compare(runner.name, generated.expected, made, "generated", run)


def _compare(backend: str, expected: dict[str, np.ndarray], values: dict[str, np.ndarray], inputs: str, run: _Run) -> None:
    """Each output (stacked over samples) against its reference: the stored outputs, or ONNX Runtime's."""
    tolerance = tolerance_for("tflite_fp32")
    reference, said = (REFERENCE, "") if inputs == "stored" else (GENERATED_REFERENCE, ", generated inputs against ONNX Runtime")
    for name, want in expected.items():
        comparison = compare_arrays(want, values[name], tolerance, (reference, backend, name))
        check = _check(comparison, name in run.unresolved, is_permutation(want, values[name], tolerance), inputs)
        run.checks.append(check)
        if check.verdict == "fail":
            run.failures.append(Failure("compare", None, f"{check.reason} ({check.backend}, output '{check.output}'{said})"))


def _check(comparison: Comparison, unresolved: bool, permuted: bool, inputs: str = "stored") -> OutputCheck:
    reason = comparison.reason or comparison.error
    if comparison.verdict == "fail" and permuted:
        reason = f"{PERMUTED}: the values are the expected ones in another order; {reason}"
    if comparison.verdict == "fail" and unresolved:
        reason = f"layout unresolved: {reason}"
    return OutputCheck(comparison.candidate, comparison.output, _finite_or_none(comparison.max_abs), comparison.verdict,
                       reason, inputs)


def is_permutation(expected: np.ndarray, actual: np.ndarray, tolerance: Tolerance) -> bool:
    """Whether `actual` holds `expected`'s values (within tolerance), in some order."""
    if expected.shape != actual.shape or not (np.all(np.isfinite(expected)) and np.all(np.isfinite(actual))):
        return False
    ordered, candidate = np.sort(expected, axis=None).astype(np.float64), np.sort(actual, axis=None).astype(np.float64)
    return bool(np.allclose(candidate, ordered, atol=tolerance.atol, rtol=tolerance.rtol))


def _result(case: Case, audit: _Audit, seconds: float) -> CaseResult:
    """The judged run's status; the first failure decides the category. The reason lists the judged run's
    failures, then each other converter's first strategy's outcome (each converter's, when every strategy raised)."""
    judged, firsts = audit.judged, _first_run_per_converter(audit.runs)
    failures = audit.failures + (judged.failures if judged else [run.failures[0] for run in firsts])
    if judged is None and not failures:  # no strategy listed at all: no converter could run
        failures = [Failure("convert", None, "no converter is available to convert this case", expected=True)]
    checks = judged.checks if judged else []
    status = "fail" if failures else ("inconclusive" if judged.outcome == "inconclusive" else "pass")
    inconclusive = next((c.reason for c in checks if c.verdict == "inconclusive"), None) if status == "inconclusive" else None
    no_evidence = next((c.reason for c in checks if c.verdict == "inconclusive" and c.inputs == "stored"), None)
    if status == "pass" and no_evidence:  # the stored data had no evidence; the generated inputs decided
        audit.notes.append(f"{NO_STORED_EVIDENCE}: {no_evidence}; judged on the generated inputs (uniform in [0, 1), integers "
                           "0, and the edge cases) against ONNX Runtime")
    own = [_reason(f) for f in (failures if judged else audit.failures)] or [inconclusive]
    others = [_other_reason(run, audit.runs) for run in firsts if judged is None or run.converter != judged.converter]
    values = [c.max_abs for c in checks if c.max_abs is not None]
    return CaseResult(
        case=case.id, folder=case.folder, status=status, category=categorize(failures[0]) if failures else None,
        max_abs=max(values) if values else None, seconds=round(seconds, 2),
        reason="; ".join(filter(None, [*own, *others])) or None, opset=audit.opset,
        failures=tuple(failures), checks=tuple(checks), notes=tuple(audit.notes + (judged.notes if judged else [])),
        converter=judged.converter if judged else None, strategy=judged.strategy.name if judged else None,
        tried=tuple(run.record() for run in audit.runs),
    )


def _first_run_per_converter(runs: list[_Run]) -> list[_Run]:
    first: dict[str, _Run] = {}
    for run in runs:
        first.setdefault(run.converter, run)
    return list(first.values())


def _other_reason(run: _Run, runs: list[_Run]) -> str:
    """What a converter made of the case, by its first strategy: that strategy's first failure, or its outcome."""
    more = sum(r.converter == run.converter for r in runs) - 1
    strategies = f"'{run.strategy.name}'" + (f" and {more} more strateg{'y' if more == 1 else 'ies'}" if more else "")
    said = _reason(run.failures[0]) if run.failures else run.outcome
    return f"{run.converter} {strategies}: {said}"


def _reason(failure: Failure) -> str:
    if failure.error is None:
        return failure.message
    return f"{failure.stage}: {failure.error}: {failure.message}"


def _finite_or_none(value: float) -> float | None:
    return float(value) if math.isfinite(value) else None


# --- the suite -----------------------------------------------------------------------

@dataclass(frozen=True)
class SuiteOptions:
    filters: tuple[str, ...] = ()
    limit: int | None = None
    out: Path = DEFAULT_OUT
    markdown: Path = DEFAULT_MARKDOWN
    data_root: Path | None = None  # default: backend_test_data()

    @property
    def json_path(self) -> Path:
        return self.out / "suite.json"

    @property
    def selection(self) -> str:
        parts = [f"--filter {f}" for f in self.filters] + ([f"--limit {self.limit}"] if self.limit else [])
        return " ".join(parts) if parts else "all"


def run_suite(options: SuiteOptions) -> SuiteReport:
    """Run every selected case in this process, sequentially; write suite.json and the markdown."""
    cases = discover(options.data_root or backend_test_data(), options.filters, options.limit)
    if not cases:
        raise UsageError(f"no backend test case matches --filter {list(options.filters)}; case ids look like "
                         "'pytorch-converted/test_Conv2d_strided'")
    converters, results, start = Converters.here(), [], time.perf_counter()
    for why in converters.unavailable:
        console.print(f"[yellow]{why}: its strategies are left out[/]")
    listed = (converters.labels(), converters.unavailable)
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    with Progress(*columns, console=console, redirect_stdout=False, redirect_stderr=False) as progress:
        task = progress.add_task("suite", total=len(cases))
        for case in cases:
            progress.update(task, description=case.id)
            results.append(run_case(case, options.out / "cases" / case.folder / case.name, converters))
            partial = summarize(results, time.perf_counter() - start, options.selection, False, listed)
            write_json(options.json_path, partial)
            progress.advance(task)
    report = summarize(results, time.perf_counter() - start, options.selection, True, listed)
    write_json(options.json_path, report)
    write_markdown(options.markdown, report)
    print_summary(report)
    console.print(f"results: {options.markdown} and {options.json_path}")
    return report


def _release_keras_state() -> None:
    """onnx2tf builds each model in tf_keras' global graph state; start every case afresh."""
    keras = sys.modules.get("tf_keras")
    if keras is not None:
        keras.backend.clear_session()


def parse_args(argv: list[str] | None) -> SuiteOptions:
    parser = argparse.ArgumentParser(prog="python -m pipeline.tools.suite", description=__doc__.splitlines()[0])
    parser.add_argument("--filter", action="append", default=[], metavar="SUBSTRING",
                        help="run the cases whose 'folder/name' contains SUBSTRING (repeat for several)")
    parser.add_argument("--limit", type=int, default=None, metavar="N", help="run at most N cases")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help=f"folder for suite.json and the cases (default {DEFAULT_OUT})")
    parser.add_argument("--markdown", type=Path, default=DEFAULT_MARKDOWN, help=f"markdown report (default {DEFAULT_MARKDOWN})")
    args = parser.parse_args(argv)
    if args.limit is not None and args.limit < 1:
        parser.error("--limit must be at least 1")
    return SuiteOptions(tuple(args.filter), args.limit, args.out.resolve(), args.markdown.resolve())


def main(argv: list[str] | None = None) -> int:
    """Exit 0 when the suite ran (whatever the pass rate), 2 for bad usage, 130 when interrupted."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    options = parse_args(argv)
    try:
        run_suite(options)
    except UsageError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print(f"interrupted; the cases run so far are in {options.json_path}", file=sys.stderr)
        return EXIT_INTERRUPTED
    return 0


if __name__ == "__main__":
    sys.exit(main())
