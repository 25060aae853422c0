"""Number formatting shared by the terminal summary, report.md and report.html."""
from __future__ import annotations


def fmt_number(value: float | None) -> str:
    """Three significant digits; tiny values in scientific notation; n/a for missing or NaN."""
    if value is None or value != value:
        return "n/a"
    return f"{value:.3g}" if abs(value) >= 1e-3 or value == 0 else f"{value:.2e}"
