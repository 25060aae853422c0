"""Graph-level lint: checks on the ONNX graph against the PyTorch modules it came from.

Each rule lives in its own module and registers itself with `@rule(name)`. A rule
takes a LintContext and yields Findings; it never raises for a problem it found.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Callable, Iterable, Literal

Severity = Literal["error", "warning", "info"]
SEVERITY_ORDER = {"error": 0, "warning": 1, "info": 2}


@dataclass(frozen=True)
class Finding:
    rule: str
    severity: Severity
    node: str
    op_type: str
    module: str | None  # PyTorch module path, or None when attribution failed
    expected: str | None
    actual: str | None
    message: str  # one line: what is wrong and what to do
    attribution: str = ""  # how the module was found, or why it could not be

    def to_json(self) -> dict:
        return asdict(self)

    @classmethod
    def from_json(cls, raw: dict) -> "Finding":
        return cls(**raw)


RuleFn = Callable[["LintContext"], Iterable[Finding]]  # noqa: F821
Phase = Literal["onnx", "tf"]  # "tf" rules need the converted SavedModel (ctx.tf_graph)
RULES: dict[str, RuleFn] = {}
PHASES: dict[str, Phase] = {}


def rule(name: str, phase: Phase = "onnx") -> Callable[[RuleFn], RuleFn]:
    """Register a lint rule under `name`, run in the given phase."""

    def register(fn: RuleFn) -> RuleFn:
        if name in RULES:
            raise ValueError(f"lint rule '{name}' registered twice")
        RULES[name] = fn
        PHASES[name] = phase
        return fn

    return register


def load_rules() -> dict[str, RuleFn]:
    """Import every module in pipeline/lint/rules/, so that each rule registers itself."""
    import importlib
    import pkgutil

    from pipeline.lint import rules

    for module in pkgutil.iter_modules(rules.__path__):
        importlib.import_module(f"{rules.__name__}.{module.name}")
    return RULES


def run_rules(context, only: list[str] | None = None, phase: Phase = "onnx") -> list[Finding]:
    findings: list[Finding] = []
    for name, fn in load_rules().items():
        if PHASES[name] == phase and (only is None or name in only):
            findings.extend(fn(context))
    return sorted(findings, key=lambda f: (SEVERITY_ORDER[f.severity], f.rule, f.node))


def count_findings(findings: list[dict]) -> dict[str, int]:
    """Findings (as JSON objects) per severity."""
    return {level: sum(f["severity"] == level for f in findings) for level in SEVERITY_ORDER}
