"""Layer-by-layer statistics: each aligned intermediate tensor's error, folded one sample at a time.

Memory stays bounded by one sample's intermediates, never all of them for all samples.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np

from pipeline.compare import Tolerance, tolerance_for
from pipeline.audit.noise import MIN_ULPS, NOISE_ATOL, NOISE_RATIO_BOUND, UNIT_ROUNDOFF, ratio_of
from pipeline.inputs import Feed
from pipeline.model.graph import TensorOrder
from pipeline.runners.base import Runner


@dataclass
class TensorStats:
    max_abs: float = 0.0
    ref_max_abs: float = 0.0
    exceeds: bool = False
    noise_floor: float | None = None  # against the oracle: how far PyTorch float32 lands from it here
    noise_ratio: float | None = None

    def update(self, ref: np.ndarray, cand: np.ndarray, tol: Tolerance) -> None:
        ref64, cand64 = ref.astype(np.float64), cand.astype(np.float64)
        if ref64.shape != cand64.shape:
            self.exceeds, self.max_abs = True, float("inf")
            return
        diff = np.abs(cand64 - ref64)
        finite = np.isfinite(diff)
        self.max_abs = max(self.max_abs, float(diff[finite].max()) if finite.any() else float("inf"))
        self.ref_max_abs = max(self.ref_max_abs, float(np.abs(ref64[np.isfinite(ref64)]).max()) if ref64.size else 0.0)
        self.exceeds = self.exceeds or bool(np.any(~finite) or np.any(diff > tol.atol + tol.rtol * np.abs(ref64)))


@dataclass
class PairLayers:
    reference: str
    candidate: str
    stats: dict[str, TensorStats] = field(default_factory=dict)


def collect(runners: dict[str, Runner], pairs: list[tuple[str, str]], feeds: list[Feed], overrides) -> list[PairLayers]:
    """Run the intermediate runners sample by sample and fold every aligned tensor into stats."""
    results = [PairLayers(ref, cand) for ref, cand in pairs]
    for runner in runners.values():
        runner.activate()
    try:
        for feed in feeds:
            outputs = {name: runner.infer(feed) for name, runner in runners.items()}
            for pair in results:
                _fold(pair, outputs[_runner_of(pair.reference)], outputs[_runner_of(pair.candidate)], overrides)
    finally:
        for runner in runners.values():
            runner.deactivate()
    return results


def apply_floors(pairs: list[PairLayers], bands: list[PairLayers]) -> None:
    """Judge every oracle pair's tensors by the floor the bands measured there: the largest of PyTorch
    float32's error against the oracle and the perturbed oracle's (model.float64.perturbed). A tensor
    without a floor (PyTorch has no output for it) is not judged, and left out."""
    for pair in pairs:
        for name in [n for n in pair.stats if not all(n in band.stats for band in bands)]:
            del pair.stats[name]
        for name, stats in pair.stats.items():
            measured = [band.stats[name] for band in bands]
            scale = max(m.ref_max_abs for m in measured)
            stats.noise_floor = max(*(m.max_abs for m in measured), MIN_ULPS * UNIT_ROUNDOFF * scale, NOISE_ATOL)
            stats.noise_ratio = ratio_of(stats.max_abs, stats.noise_floor)
            stats.exceeds = not (stats.noise_ratio <= NOISE_RATIO_BOUND)


def _runner_of(backend: str) -> str:
    return "tf_layers" if backend == "keras" else backend


def _fold(pair: PairLayers, ref: dict, cand: dict, overrides) -> None:
    tol = tolerance_for(pair.candidate, overrides)
    for name in ref.keys() & cand.keys():
        pair.stats.setdefault(name, TensorStats()).update(ref[name], cand[name], tol)


def layers_json(pair: PairLayers, order: TensorOrder, module_of) -> dict:
    tensors = []
    for index, name in enumerate(order.tensors):
        if name in pair.stats:
            node = order.producer[name]
            tensors.append({"index": index, "tensor": name, "node": node.name, "op_type": node.op_type,
                            "module": module_of(node), **asdict(pair.stats[name])})
    return {"reference": pair.reference, "candidate": pair.candidate, "tensors": tensors}


