"""How much of the output error each correction explains: rebuild the port with that one
correction, rerun, and compare; then all corrections together.

explained = (error_before - max(error_after, floor)) / (error_before - floor), clipped to
[0, 1]: a correction that brings the port down to the noise floor explains all of its error.
"""
from __future__ import annotations

import dataclasses
import math
from typing import Callable

from pipeline.diagnose.corrections import Correction, corrected
from pipeline.artifacts.diagnose_record import Finding, OutputError
from pipeline.errors import first_line

Evaluate = Callable[[object], OutputError]


def fraction_explained(before: OutputError, after: OutputError) -> float:
    if not math.isfinite(before.error):
        return 1.0 if math.isfinite(after.error) and after.within_floor else 0.0
    if before.error <= before.floor:
        return 0.0
    removed = before.error - max(after.error, before.floor)
    return min(max(removed / (before.error - before.floor), 0.0), 1.0)


def explain(port, findings: list[Finding], before: OutputError, evaluate: Evaluate) -> tuple[list[Finding], dict | None]:
    """Each finding with error_before/error_after/explained; and the result of every correction at once."""
    explained = [_explain_one(port, finding, before, evaluate) for finding in findings]
    corrections = applied(findings)
    if not any(c.affects_inference for c in corrections):
        return explained, None
    explained = _left_alone(port, explained, corrections, before, evaluate)
    try:
        with corrected(port, corrections) as model:
            after = evaluate(model)
    except Exception as exc:  # a rebuild Keras refuses: reported, the other results stand
        return explained, {"corrections": [c.description for c in corrections], "error": _why(exc)}
    return explained, {"corrections": [c.description for c in corrections], "max_abs_after": after.max_abs,
                       "error_after": after.error, "ratio_after": after.ratio, "within_floor": after.within_floor,
                       "explained": fraction_explained(before, after)}


# Beyond this many correctable findings (a deep port with every BatchNorm wrong), the
# "only this one left" runs are skipped: each finding's share is then small and alike.
LEFT_ALONE_LIMIT = 12


def _left_alone(port, findings: list[Finding], corrections: list[Correction], before: OutputError,
                evaluate: Evaluate) -> list[Finding]:
    """When culprits interact (two shifted convs: fixing one leaves the other's error), the error
    with every other correction applied says what this one alone still costs."""
    active = [f for f in findings if f.correction is not None and f.severity != "info" and f.correction.affects_inference]
    if len(active) < 2 or len(active) > LEFT_ALONE_LIMIT:
        return findings
    out = []
    for finding in findings:
        if finding not in active:
            out.append(finding)
            continue
        others = [c for c in corrections if c is not finding.correction]
        try:
            with corrected(port, others) as model:
                alone = evaluate(model)
        except Exception as exc:
            out.append(dataclasses.replace(finding, detail={**(finding.detail or {}), "left_alone_error": _why(exc)}))
            continue
        share = {"error_if_only_this_remains": alone.error,
                 "share_if_only_this_remains": alone.error / before.error if before.error and math.isfinite(before.error) else None}
        out.append(dataclasses.replace(finding, detail={**(finding.detail or {}), **share}))
    return out


def applied(findings: list[Finding]) -> list[Correction]:
    """The corrections the fix applies: those of error and warning findings, each once."""
    seen, out = set(), []
    for finding in findings:
        c = finding.correction
        if c is not None and finding.severity != "info" and id(c) not in seen:
            seen.add(id(c))
            out.append(c)
    return out


def _explain_one(port, finding: Finding, before: OutputError, evaluate: Evaluate) -> Finding:
    correction = finding.correction
    if correction is None or finding.severity == "info":
        return dataclasses.replace(finding, error_before=before.error)
    if not correction.affects_inference:
        return dataclasses.replace(finding, error_before=before.error, error_after=before.error, explained=0.0)
    try:
        with corrected(port, [correction]) as model:
            after = evaluate(model)
    except Exception as exc:
        detail = {**(finding.detail or {}), "explain_error": _why(exc)}
        return dataclasses.replace(finding, error_before=before.error, detail=detail)
    result = dataclasses.replace(finding, error_before=before.error, error_after=after.error,
                                 explained=fraction_explained(before, after))
    return _below_noise(result, before, after)


def _below_noise(finding: Finding, before: OutputError, after: OutputError) -> Finding:
    """An error whose correction moves the output by less than the float32 noise floor, on a port
    already within the floor (epsilon 1.001e-5 against 1e-5, say), is a warning, not a culprit."""
    if finding.severity != "error" or not before.within_floor or not after.within_floor:
        return finding
    if abs(after.error - before.error) > before.floor:
        return finding
    return dataclasses.replace(finding, severity="warning",
                               message=finding.message + " (its effect is within the float32 noise floor on these inputs)")


def _why(exc: Exception) -> str:
    return f"rebuilding the port failed: {type(exc).__name__}: {first_line(exc, 160)}"
