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


RuleFn = Callable[["LintContext"], Iterable[Finding]]  # noqa: F821
RULES: dict[str, RuleFn] = {}


def rule(name: str) -> Callable[[RuleFn], RuleFn]:
    """Register a lint rule under `name`."""

    def register(fn: RuleFn) -> RuleFn:
        if name in RULES:
            raise ValueError(f"lint rule '{name}' registered twice")
        RULES[name] = fn
        return fn

    return register


def load_rules() -> dict[str, RuleFn]:
    """Import every rule module so that each registers itself."""
    from pipeline.lint import auto_pad, bn_epsilon, norm_epsilon, pad_op, pads, pool_attrs  # noqa: F401

    return RULES


def run_rules(context, only: list[str] | None = None) -> list[Finding]:
    findings: list[Finding] = []
    for name, fn in load_rules().items():
        if only is None or name in only:
            findings.extend(fn(context))
    return sorted(findings, key=lambda f: (SEVERITY_ORDER[f.severity], f.rule, f.node))
