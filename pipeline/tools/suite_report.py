"""The backend test suite's results: typed records, pass rates, suite.json, SUITE.md and
the terminal summary. Nothing here runs a model (pipeline.suite does)."""
from __future__ import annotations

import os
import platform
import time
from dataclasses import asdict, dataclass
from importlib import metadata
from pathlib import Path

from rich.table import Table

from pipeline.artifacts import folder as artifacts
from pipeline.compare import tolerance_for
from pipeline.console import console

FOLDERS = ("pytorch-converted", "pytorch-operator")
UNSUPPORTED, NUMERIC, LAYOUT, OLD_OPSET, OTHER = (
    "unsupported by converter", "numeric mismatch", "layout", "old opset", "other")
CATEGORIES = (UNSUPPORTED, NUMERIC, LAYOUT, OLD_OPSET, OTHER)
REASON_WIDTH = 120  # at most this many characters of a reason on the terminal (one line per case)
VERSIONED = {"onnx": ("onnx",), "onnx2tf": ("onnx2tf",), "tensorflow": ("tensorflow-cpu", "tensorflow"),
             "ai-edge-litert": ("ai-edge-litert",)}


@dataclass(frozen=True)
class Failure:
    """Why a case stopped, or which comparison failed."""

    stage: str  # load | import | convert | bind | run | compare
    error: str | None  # the exception's type; None for a failed comparison
    message: str  # the exception's first line, or the comparison's reason
    expected: bool = True  # False: not one of the pipeline's typed errors (a bug, or a library's own error)


@dataclass(frozen=True)
class OutputCheck:
    """One backend's output against the stored expected output, or against ONNX Runtime on generated inputs."""

    backend: str
    output: str
    max_abs: float | None
    verdict: str  # pass | fail | inconclusive (pipeline.compare)
    reason: str | None
    inputs: str = "stored"  # stored (the case's test_data_set_0) | generated (seeded samples, ONNX Runtime's outputs)


RAISED = "raised"  # a strategy's outcome when it did not convert (or its model could not be bound)


@dataclass(frozen=True)
class StrategyRun:
    """One conversion strategy's try on a case: which converter ran it, and how it ended."""

    strategy: str  # the convert stage's strategy name (pipeline/convert/stage.py)
    converter: str  # "onnx2tf 1.29.24": the package and version that ran it
    outcome: str  # raised | pass | fail | inconclusive (its files judged on the stored data)
    seconds: float
    failures: tuple[Failure, ...] = ()
    checks: tuple[OutputCheck, ...] = ()


@dataclass(frozen=True)
class CaseResult:
    case: str  # folder/name
    folder: str
    status: str  # pass | fail | inconclusive
    category: str | None  # one of CATEGORIES when the case failed
    max_abs: float | None  # the largest over backends and outputs
    seconds: float
    reason: str | None
    opset: int | None  # as shipped, before any upgrade
    failures: tuple[Failure, ...] = ()  # the first decides the category
    checks: tuple[OutputCheck, ...] = ()
    notes: tuple[str, ...] = ()
    converter: str | None = None  # which converter made the judged files ("onnx2tf 2.6.9"); None: none converted
    strategy: str | None = None  # and with which strategy
    tried: tuple[StrategyRun, ...] = ()  # every strategy run on the case, in order

    @property
    def made_by(self) -> str:
        return f"{self.converter} '{self.strategy}'" if self.converter else ""


@dataclass(frozen=True)
class PassRate:
    scope: str  # a folder, or "all"
    cases: int
    passed: int
    failed: int
    inconclusive: int

    @property
    def rate(self) -> float:
        return self.passed / self.cases if self.cases else 0.0

    @classmethod
    def of(cls, scope: str, results: list[CaseResult]) -> "PassRate":
        count = lambda status: sum(r.status == status for r in results)  # noqa: E731
        return cls(scope, len(results), count("pass"), count("fail"), count("inconclusive"))


@dataclass(frozen=True)
class SuiteReport:
    date: str
    machine: str
    versions: dict[str, str]
    seconds: float
    selection: str  # which cases: all, or the filters and limit
    finished: bool  # False while the suite runs (suite.json is rewritten after every case)
    overall: PassRate
    folders: tuple[PassRate, ...]
    categories: dict[str, int]  # every category, zeros included
    cases: tuple[CaseResult, ...]
    converters: tuple[str, ...] = ()  # the converters the strategy list ran here, in its order ("onnx2tf 1.29.24", ...)
    unavailable: tuple[str, ...] = ()  # why a converter of the strategy list could not run here (one line each)

    def passed_by(self) -> dict[str, int]:
        """Passed cases per converter that made the judged files, every converter listed (zeros included)."""
        passed = [r.converter for r in self.cases if r.status == "pass"]
        return {c: passed.count(c) for c in dict.fromkeys([*self.converters, *filter(None, passed)])}

    def tried_by(self) -> dict[str, int]:
        """Cases on which each converter ran at least one strategy."""
        ran = [c for r in self.cases for c in dict.fromkeys(run.converter for run in r.tried)]
        return {c: ran.count(c) for c in dict.fromkeys([*self.converters, *ran])}

    def to_json(self) -> dict:
        rates = lambda r: {**asdict(r), "rate": round(r.rate, 4)}  # noqa: E731
        return {**asdict(self), "overall": rates(self.overall), "folders": [rates(r) for r in self.folders]}


def summarize(results: list[CaseResult], seconds: float, selection: str, finished: bool = True,
              converters: tuple[tuple[str, ...], tuple[str, ...]] = ((), ())) -> SuiteReport:
    """Pass rates overall and per folder, and failures per category; `converters`: the converters that ran
    and why the others could not (SuiteReport.converters and .unavailable)."""
    folders = [f for f in FOLDERS if any(r.folder == f for r in results)]
    folders += sorted({r.folder for r in results} - set(folders))
    return SuiteReport(
        date=time.strftime("%Y-%m-%d %H:%M"), machine=machine(), versions=versions(), seconds=round(seconds, 1),
        selection=selection, finished=finished, overall=PassRate.of("all", results),
        folders=tuple(PassRate.of(f, [r for r in results if r.folder == f]) for f in folders),
        categories={c: sum(r.category == c for r in results) for c in CATEGORIES}, cases=tuple(results),
        converters=converters[0], unavailable=converters[1],
    )


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        cpu = next((line.split(":", 1)[1].strip() for line in cpuinfo.read_text().splitlines()
                    if line.startswith("model name")), cpu)
    return f"{cpu}, {os.cpu_count()} cores, {platform.system()}, Python {platform.python_version()}"


def versions() -> dict[str, str]:
    return {name: next((v for v in map(_version, dists) if v), "not installed") for name, dists in VERSIONED.items()}


def _version(distribution: str) -> str | None:
    try:
        return metadata.version(distribution)
    except metadata.PackageNotFoundError:
        return None


def write_json(path: Path, report: SuiteReport) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    artifacts.write_json(path, report.to_json())


def write_markdown(path: Path, report: SuiteReport) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(markdown(report))
    os.replace(tmp, path)


def markdown(report: SuiteReport) -> str:
    tolerance = tolerance_for("tflite_fp32")
    lines = [
        "# ONNX backend test cases through the pipeline", "",
        f"Written by `make suite` (`python -m pipeline.tools.suite`) on {report.date}; cases: {report.selection}.", "",
        f"Machine: {report.machine}. Versions: " + ", ".join(f"{k} {v}" for k, v in report.versions.items()) + ".", "",
        "Each case of onnx's `backend/test/data/{pytorch-converted,pytorch-operator}` is imported like "
        "`python -m pipeline convert FILE.onnx` (opset < 7 upgraded to 13) and converted like the convert stage "
        "converts it: its strategy list in order (`pipeline/convert/stage.py`: onnx2tf 1.x's strategies, then "
        "onnx2tf 2.x), until one converts and its layouts bind. Its SavedModel and TFLite fp32 models are run on the "
        f"stored inputs and compared with the stored outputs (atol {tolerance.atol:g}, rtol {tolerance.rtol:g}). When "
        "they fail, the other converter's strategy runs, as the repair's first candidate does after the audit, and its "
        "files are judged the same way; they are the case's files when they pass, else the first converter's stay. "
        f"All cases ran in one process, sequentially, in {report.seconds:.0f} s.", "",
        *_converter_lines(report),
        "Both models run on the stored inputs, compared with the stored outputs, and on the ONNX route's own "
        "samples (4 seeded uniform inputs of the stored shapes in [0, 1) and the zeros, constant and "
        "largest-magnitude edge cases), compared with ONNX Runtime's outputs on the case's own model.onnx. A case passes "
        "when every output of both models passes one comparison and fails neither. It is inconclusive when they "
        "agree but neither carries evidence (all zeros, NaN or Inf: `pipeline.compare`'s rule). A failed "
        "case's category comes from its first failure (rules: `pipeline.tools.suite.categorize`); its reason lists "
        "every failure, then each other converter's first one. `suite.json` has each strategy's outcome, each "
        "output's check and each failure's stage and exception type.", "",
        *_generated_lines(report),
        f"**Pass rate: {report.overall.passed}/{report.overall.cases} ({report.overall.rate:.1%})**", "",
        "| folder | cases | pass | fail | inconclusive | pass rate |", "|---|---:|---:|---:|---:|---:|",
        *(_rate_row(r) for r in (*report.folders, report.overall)), "",
        "## Failures by category", "", "| category | cases |", "|---|---:|",
        *(f"| {c} | {n} |" for c, n in report.categories.items()), "",
        "## Cases", "", "| case | status | category | converted by | max_abs | seconds | reason |",
        "|---|---|---|---|---:|---:|---|",
        *(_case_row(r) for r in report.cases), "",
    ]
    return "\n".join(lines)


# How a case's notes begin when the generated inputs did not judge it, judged it against the imported file, or
# decided it alone (pipeline/tools/suite.py writes them).
NOT_JUDGED = "generated inputs not judged"
AGAINST_IMPORTED = "generated inputs judged against ONNX Runtime on the imported file"
NO_STORED_EVIDENCE = "stored outputs"
GENERATED_NOTES = (NOT_JUDGED, AGAINST_IMPORTED, NO_STORED_EVIDENCE)


def _generated_lines(report: SuiteReport) -> list[str]:
    """Which cases the generated inputs did not judge, or judged against the imported file, or decided alone."""
    lines = []
    for start, said in zip(GENERATED_NOTES, ("not judged on the generated inputs",
                                             "judged on the generated inputs against the imported file",
                                             "judged on the generated inputs alone (their stored outputs carry no evidence)")):
        cases = [r.case for r in report.cases if any(note.startswith(start) for note in r.notes)]
        if cases:
            lines.append(f"- {len(cases)} case(s) {said}: " + ", ".join(f"`{c}`" for c in cases) + " (their notes in `suite.json` say why)")
    return lines + ([""] if lines else [])


def _converter_lines(report: SuiteReport) -> list[str]:
    """Passes per converter (the one whose files were judged), where each ran, and the ones that could not."""
    passed = ", ".join(f"{c}: {n}" for c, n in report.passed_by().items()) or "none"
    tried = ", ".join(f"{c} on {n}" for c, n in report.tried_by().items()) or "none"
    lines = [f"**Passes per converter: {passed}** (strategies ran: {tried} cases).", ""]
    lines += [f"Not available: {why}; its strategies were not run." for why in report.unavailable]
    return lines + ([""] if report.unavailable else [])


def _rate_row(rate: PassRate) -> str:
    scope = "**all**" if rate.scope == "all" else rate.scope
    return f"| {scope} | {rate.cases} | {rate.passed} | {rate.failed} | {rate.inconclusive} | {rate.rate:.1%} |"


def _case_row(result: CaseResult) -> str:
    cells = (result.case, result.status, result.category or "", result.made_by, _abs(result.max_abs),
             f"{result.seconds:.1f}", (result.reason or "").replace("|", "\\|"))
    return "| " + " | ".join(cells) + " |"


def _abs(value: float | None) -> str:
    return "" if value is None else f"{value:.2e}"


def print_summary(report: SuiteReport) -> None:
    table = Table(title=f"ONNX backend test cases ({report.selection}): {report.seconds:.0f} s")
    for header in ("folder", "cases", "pass", "fail", "inconclusive", "pass rate"):
        table.add_column(header, justify="left" if header == "folder" else "right")
    for rate in (*report.folders, report.overall):
        table.add_row(rate.scope, *(str(n) for n in (rate.cases, rate.passed, rate.failed, rate.inconclusive)),
                      f"{rate.rate:.1%}", style="bold" if rate.scope == "all" else None)
    console.print(table)
    categories = Table(title="failures by category")
    categories.add_column("category")
    categories.add_column("cases", justify="right")
    for category, count in report.categories.items():
        categories.add_row(category, str(count))
    console.print(categories)
    passed = ", ".join(f"{c} {n}" for c, n in report.passed_by().items()) or "none"
    console.print(f"passes per converter (the one whose files were judged): {passed}")
    for why in report.unavailable:
        console.print(f"[yellow]not available: {why}[/]")
    _print_problems(report)


def _print_problems(report: SuiteReport) -> None:
    problems = [r for r in report.cases if r.status != "pass"]
    if not problems:
        return
    case_width, outcome_width = 38, 24 + 34  # category, and the converter and strategy
    reason_width = max(30, min(REASON_WIDTH, console.width - case_width - outcome_width - 10))
    table = Table(title="cases that did not pass (full reasons in the markdown report)")
    for header in ("case", "category (or inconclusive)", "converted by", "reason"):
        table.add_column(header, no_wrap=True)
    for result in problems:
        table.add_row(_clip(result.case.split("/", 1)[1], case_width), result.category or result.status,
                      result.made_by, _clip(result.reason or "", reason_width))
    console.print(table)


def _clip(text: str, width: int) -> str:
    return text if len(text) <= width else text[: width - 1] + "…"
