"""Outputs and intermediates of the port against PyTorch float32 and the float64 oracle.

The noise-floor rule is the audit's (pipeline.audit.noise): the oracle is a float64 copy of
the PyTorch model; each sample's floor is the largest of PyTorch float32's error against it,
the spread of the oracle when weights, inputs and each leaf module's output move by float32
roundings (two perturbed float64 runs), and 16 roundings of the scale; a tensor is within the
floor while its worst sample's error stays within NOISE_RATIO_BOUND of that sample's floor.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from pipeline.audit.noise import NOISE_ATOL, NOISE_RATIO_BOUND, PERTURBATION_SEEDS, sample_floors, worst_sample
from pipeline.model.float64 import float64_copy, perturbed, to_float64
from pipeline.diagnose.mapping import FUSED, Mapping
from pipeline.artifacts.diagnose_record import LayerRow, OutputError
from pipeline.diagnose.run import PortLayout, probe_model, run_port, run_torch
from pipeline.errors import UsageError
from pipeline.inputs import TensorSpec


@dataclass(frozen=True)
class Reference:
    """PyTorch float32 and the float64 oracle on the shared samples, outputs and mapped modules."""

    fp32: list[np.ndarray]
    oracle: list[np.ndarray]
    fp32_layers: dict[str, np.ndarray]
    oracle_layers: dict[str, np.ndarray]
    perturbed: list[list[np.ndarray]]  # per perturbed float64 run: its outputs
    perturbed_layers: list[dict[str, np.ndarray]]

    def output_floors(self, index: int) -> np.ndarray:
        return sample_floors(self.fp32[index], self.oracle[index], [run[index] for run in self.perturbed], NOISE_ATOL)

    def layer_floors(self, module: str) -> np.ndarray:
        runs = [run[module] for run in self.perturbed_layers if module in run]
        return sample_floors(self.fp32_layers[module], self.oracle_layers[module], runs, NOISE_ATOL)


def reference_run(model: torch.nn.Module, samples: dict[str, np.ndarray], specs: list[TensorSpec], names: list[str]) -> Reference:
    fp32, fp32_layers = run_torch(model, samples, specs, names, torch.float32)
    wide = {name: to_float64(array) for name, array in samples.items()}
    oracle, oracle_layers = run_torch(float64_copy(model), wide, specs, names, torch.float64)
    runs = [run_torch(perturbed(float64_copy(model), seed), wide, specs, names, torch.float64) for seed in PERTURBATION_SEEDS]
    return Reference(fp32, oracle, fp32_layers, oracle_layers, [r[0] for r in runs], [r[1] for r in runs])


def in_torch_layout(array: np.ndarray, target: tuple[int, ...], layout: PortLayout) -> np.ndarray | None:
    """A port tensor stacked by sample, read in PyTorch's layout (None when it cannot be)."""
    if layout.channels_last and array.ndim >= 4:
        moved = np.moveaxis(array, -1, 2)
        if moved.shape == target:
            return moved
    return array if array.shape == target else None


def output_error(port_outputs: list[np.ndarray], reference: Reference, layout: PortLayout) -> OutputError:
    """The worst output (by noise ratio): max |port - PyTorch|, error against the oracle, floor."""
    worst = None
    for index, (ours, fp32, oracle) in enumerate(zip(port_outputs, reference.fp32, reference.oracle)):
        candidate = in_torch_layout(ours, fp32.shape, layout)
        floors = reference.output_floors(index)
        if candidate is None:
            row = OutputError(math.inf, math.inf, float(np.max(floors)), math.inf, False)
        else:
            error, floor, ratio = worst_sample(candidate, oracle, floors)
            row = OutputError(float(np.max(np.abs(candidate - fp32))), error, floor, ratio, bool(ratio <= NOISE_RATIO_BOUND))
        if worst is None or not (row.ratio <= worst.ratio):
            worst = row
    return worst


def check_outputs(port, reference: Reference, path) -> None:
    if len(port.outputs) != len(reference.fp32):
        raise UsageError(f"--keras {path}: the port has {len(port.outputs)} outputs, the PyTorch model "
                         f"{len(reference.fp32)}; they must correspond in order")


def layer_rows(port, mapping: Mapping, samples: dict[str, np.ndarray], specs: list[TensorSpec],
               layout: PortLayout, reference: Reference) -> tuple[list[np.ndarray], list[LayerRow]]:
    """The port's outputs and one row per mapped pair whose tensors can be compared, in port order."""
    pairs = _comparable(port, mapping)
    probe = probe_model(port, [p.keras_layer for p in pairs])
    stacked = run_port(probe, samples, specs, layout)
    outputs, tensors = stacked[:len(port.outputs)], stacked[len(port.outputs):]
    rows = [_row(depth, pair, tensor, layout, reference) for depth, (pair, tensor) in enumerate(zip(pairs, tensors))]
    return outputs, rows


def _comparable(port, mapping: Mapping) -> list:
    """Pairs whose Keras output is the module's output: a conv with a fused activation is compared
    at the activation; a layer used twice (shared) is skipped."""
    fused = {p.keras_layer for p in mapping.pairs if p.method == FUSED}
    chosen = []
    for pair in mapping.pairs:
        if pair.keras_layer in fused and pair.method != FUSED:
            continue
        if type(port).__name__ != "Sequential" and len(port.get_layer(pair.keras_layer)._inbound_nodes) != 1:
            continue  # a shared layer: which call's output is meant is not decidable
        chosen.append(pair)
    return chosen


def _row(depth: int, pair, tensor: np.ndarray, layout: PortLayout, reference: Reference) -> LayerRow:
    fp32, oracle = reference.fp32_layers.get(pair.module), reference.oracle_layers.get(pair.module)
    candidate = in_torch_layout(tensor, fp32.shape, layout) if fp32 is not None else None
    if candidate is None:
        note = "module not run" if fp32 is None else f"shape {list(tensor.shape[1:])} vs PyTorch {list(fp32.shape[1:])}"
        return LayerRow(depth, pair.keras_layer, pair.module, pair.kind, None, None, None, None, None, note)
    error, floor, ratio = worst_sample(candidate, oracle, reference.layer_floors(pair.module))
    return LayerRow(depth, pair.keras_layer, pair.module, pair.kind, float(np.max(np.abs(candidate - fp32))),
                    error, floor, ratio, bool(ratio <= NOISE_RATIO_BOUND))


def first_divergent(rows: list[LayerRow]) -> str | None:
    """The first mapped layer whose error leaves the noise floor (or whose shape differs)."""
    for row in rows:
        if row.within_floor is False or (row.within_floor is None and row.note.startswith("shape")):
            return row.keras_layer
    return None
