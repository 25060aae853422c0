"""Tensor layouts between the reference framework (NCHW) and TensorFlow (NHWC).

onnx2tf turns 3-D to 5-D inputs and most such outputs channel-last. A layout is
decided per tensor and recorded with how it was decided. Shape equality alone
never decides it: when both candidates fit the shapes (a (2,3,3,3) tensor), the
layout is marked ambiguous and the report says so.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

CHANNEL_LAST_RANKS = (3, 4, 5)


@dataclass(frozen=True)
class Layout:
    """How a backend's tensor relates to the logical (ONNX) tensor."""

    perm: tuple[int, ...] | None  # logical -> backend axis order; None means identical
    decided_by: str  # "rank" | "shape" | "convention" | "probe" | "unresolved"
    ambiguous: bool = False
    note: str = ""

    @property
    def name(self) -> str:
        return "channel-last" if self.perm else "as-is"

    def to_backend(self, array: np.ndarray) -> np.ndarray:
        return np.ascontiguousarray(np.transpose(array, self.perm)) if self.perm else array

    def to_logical(self, array: np.ndarray) -> np.ndarray:
        return np.ascontiguousarray(np.transpose(array, np.argsort(self.perm))) if self.perm else array

    def to_json(self) -> dict:
        return {"layout": self.name, "perm": list(self.perm) if self.perm else None,
                "decided_by": self.decided_by, "ambiguous": self.ambiguous, "note": self.note}

    @classmethod
    def from_json(cls, raw: dict) -> "Layout":
        perm = tuple(raw["perm"]) if raw.get("perm") else None
        return cls(perm, raw["decided_by"], raw.get("ambiguous", False), raw.get("note", ""))


def channel_last_perm(rank: int) -> tuple[int, ...]:
    return (0, *range(2, rank), 1)


AS_IS = Layout(None, "rank")


def candidates(logical: tuple[int, ...], backend: tuple[int, ...]) -> list[Layout]:
    """Every layout consistent with the two shapes."""
    fits = []
    if _fits(tuple(logical), tuple(backend)):
        fits.append(Layout(None, "shape"))
    if len(logical) in CHANNEL_LAST_RANKS:
        perm = channel_last_perm(len(logical))
        if _fits(tuple(logical[i] for i in perm), tuple(backend)):
            fits.append(Layout(perm, "shape"))
    return fits


def _fits(logical: tuple, backend: tuple) -> bool:
    """A dynamic backend dimension (None or -1) takes any size; the others must be equal."""
    return len(logical) == len(backend) and all(b in (None, -1) or a == b for a, b in zip(logical, backend))


def decide(logical: tuple[int, ...], backend: tuple[int, ...], prefer_channel_last: bool) -> Layout:
    """Pick a layout from shapes; fall back to onnx2tf's convention and flag ambiguity."""
    if len(logical) not in CHANNEL_LAST_RANKS and _fits(tuple(logical), tuple(backend)):
        return AS_IS
    fits = candidates(logical, backend)
    if len(fits) == 1:
        return fits[0]
    if not fits:
        return Layout(None, "unresolved", True, f"shape {list(backend)} fits neither {list(logical)} nor its channel-last form")
    chosen = fits[1] if prefer_channel_last else fits[0]
    return Layout(chosen.perm, "convention", True,
                  f"shape {list(logical)} reads the same in both layouts; assumed {chosen.name} (onnx2tf's convention)")


def resolve_by_probe(logical_ref: np.ndarray, backend_out: np.ndarray, fits: list[Layout]) -> Layout:
    """For an ambiguous output: keep the candidate that matches the reference numerically."""
    if len(fits) < 2:
        return fits[0] if fits else Layout(None, "unresolved", True, "no layout fits the shapes")
    errors = [float(np.max(np.abs(layout.to_logical(backend_out).astype(np.float64) - logical_ref))) for layout in fits]
    best = int(np.argmin(errors))
    others = [e for i, e in enumerate(errors) if i != best]
    decisive = all(e > 10 * max(errors[best], 1e-12) for e in others)
    note = (f"shape reads the same in both layouts; {fits[best].name} matched the reference "
            f"(max_abs {errors[best]:.3g} vs {min(others):.3g})")
    if not decisive:
        return Layout(fits[best].perm, "unresolved", True, note + "; the probe was not decisive")
    return Layout(fits[best].perm, "probe", True, note)
