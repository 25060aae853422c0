"""The per-comparison table both the terminal summary and report.md show."""
from __future__ import annotations

from pipeline.names import label
from pipeline.report.fmt import fmt_number


def rows(report: dict) -> list[list[str]]:
    rows = []
    for c in report["comparisons"]:
        verdict = c.get("verdict", "pass" if c["passed"] else "fail")
        result = verdict if verdict == "pass" else f"{verdict.upper()}: {c.get('reason') or c.get('error') or ''}"
        if verdict == "pass" and c.get("warning"):
            result = "pass (precision cost: see warning)"
        rows.append([
            label(c["candidate"]) + _at(c.get("shape")), c["output"], fmt_number(c["max_abs"]), _ratio(c.get("noise_ratio")),
            fmt_number(c["mean_abs"]), fmt_number(c["cosine"]), _snr(c.get("snr_db")), _rule(c), result,
        ])
    return rows


def _at(shape: dict | None) -> str:
    """A dynamic model's row names its shape: the example's, or the sizes that differ from it."""
    if shape is None:
        return ""
    return " @ example" if not shape else " @ " + ", ".join(f"{name} {size}" for name, size in shape.items())


def _ratio(value: float | None) -> str:
    return "n/a" if value is None or value != value else f"{value:.3g}x"


def _snr(value: float | None) -> str:
    return "n/a" if value is None or value != value else f"{value:.1f}"


def _rule(c: dict) -> str:
    rule = c.get("rule", "tolerance")
    return f"{rule} (atol {c['atol']:g}, rtol {c['rtol']:g})" if rule.startswith("tolerance") else rule


# max_abs is against the reference (PyTorch); "x floor" is the error against the float64 oracle
# as a multiple of the float32 noise floor.
HEADERS = ["backend", "output", "max_abs", "x floor", "mean_abs", "cosine", "SNR dB", "rule", "result"]
