"""Graph-level lint: checks on the ONNX graph against the PyTorch modules it came from.

Each rule lives in its own module and registers itself with `@rule(name)`. A rule
takes a LintContext and yields Findings; it never raises for a problem it found.
"""
from __future__ import annotations

from typing import Callable, Iterable, Literal

# A Finding is data every later stage reads (the lint record, the audit's localization, the report):
# it lives in pipeline/findings.py, below the stages, and lint re-exports it for its rules.
from pipeline.findings import SEVERITY_ORDER, Finding, Severity, count_findings  # noqa: F401


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
