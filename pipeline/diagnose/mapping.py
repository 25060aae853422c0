"""Map Keras layers to the PyTorch modules they were ported from.

Layers that hold weights are mapped by their weights (conv kernels up to the HWIO/OIHW
transpose, Dense as the transposed Linear, BatchNorm's four arrays); where weights match
several modules or none, by order and type. Parameter-free layers (activations, pooling,
upsampling, flatten, padding) are mapped by order and type between two mapped weighted
layers. Every ambiguity and every unmapped layer is reported.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from pipeline.diagnose.graph import input_shape, producer
from pipeline.diagnose.kinds import (
    WEIGHTED_KINDS, keras_kind, keras_weights, nhwc_flatten_weight, torch_weights, weights_equal,
)
from pipeline.diagnose.run import TorchCall

BY_WEIGHTS, BY_WEIGHTS_NHWC, BY_ORDER, FUSED = "weights", "weights (NHWC flatten order)", "order and type", "fused activation"
BY_WEIGHTS_PERMUTED = "weights (input channels permuted)"


@dataclass(frozen=True)
class Pair:
    """A Keras layer and the PyTorch module it was ported from."""

    keras_layer: str
    module: str
    kind: str
    method: str

    def to_json(self) -> dict:
        return {"keras_layer": self.keras_layer, "module": self.module, "kind": self.kind, "mapped_by": self.method}


@dataclass(frozen=True)
class Mapping:
    pairs: tuple[Pair, ...]
    ambiguities: tuple[str, ...]
    unmapped_keras: tuple[str, ...]
    unmapped_torch: tuple[str, ...]
    unchecked_keras: tuple[str, ...] = ()  # layers no rule knows (Concatenate, Reshape, ...): compared only through outputs
    unchecked_torch: tuple[str, ...] = ()

    def weighted_unmapped(self, port, calls: list[TorchCall]) -> tuple[list[str], list[str]]:
        kinds = {c.name: c.kind for c in calls}
        keras_left = [n for n in self.unmapped_keras if " " not in n and keras_kind(port.get_layer(n)) in WEIGHTED_KINDS]
        return keras_left, [n for n in self.unmapped_torch if kinds.get(n) in WEIGHTED_KINDS]

    def to_json(self) -> dict:
        return {"pairs": [p.to_json() for p in self.pairs], "ambiguities": list(self.ambiguities),
                "unmapped_keras": list(self.unmapped_keras), "unmapped_torch": list(self.unmapped_torch),
                "unchecked_keras": list(self.unchecked_keras), "unchecked_torch": list(self.unchecked_torch)}


def map_layers(port, model: torch.nn.Module, calls: list[TorchCall]) -> Mapping:
    modules = dict(model.named_modules())
    layers = [layer for layer in port.layers if keras_kind(layer)]
    weighted_k = [layer for layer in layers if keras_kind(layer) in WEIGHTED_KINDS]
    weighted_t = [c for c in calls if c.kind in WEIGHTED_KINDS]
    pairs, notes = _map_weighted(weighted_k, weighted_t, modules)
    free_pairs = _map_free(layers, calls, {p.keras_layer: p.module for p in pairs})
    all_pairs = pairs + free_pairs
    done_k = {p.keras_layer for p in all_pairs if p.method != FUSED}
    done_t = {p.module for p in all_pairs}
    fused_left = [f"{layer.name} (fused activation '{_activation(layer)}')" for layer in layers
                  if _activation(layer) not in (None, "linear") and not any(p.keras_layer == layer.name and p.method == FUSED for p in all_pairs)]
    return Mapping(
        pairs=tuple(sorted(all_pairs, key=_order_key(port))),
        ambiguities=tuple(notes),
        unmapped_keras=tuple([layer.name for layer in layers if layer.name not in done_k] + fused_left),
        unmapped_torch=tuple(c.name for c in calls if c.kind and c.name not in done_t),
        unchecked_keras=tuple(f"{op.name} ({type(op).__name__})" for op in _operations(port)
                              if not keras_kind(op) and type(op).__name__ != "InputLayer"),
        unchecked_torch=tuple(f"{c.name} ({type(modules[c.name]).__name__})" for c in calls if not c.kind),
    )


def _operations(port) -> list:
    """Layers and ops (GetItem, ...) of a functional port; the layers of a Sequential one."""
    try:
        return list(port.operations)
    except AttributeError:
        return list(port.layers)


def _order_key(port):
    index = {layer.name: i for i, layer in enumerate(port.layers)}
    return lambda p: (index.get(p.keras_layer, 0), p.method == FUSED)


def _map_weighted(layers, calls: list[TorchCall], modules) -> tuple[list[Pair], list[str]]:
    candidates = {layer.name: _candidates(layer, calls, modules) for layer in layers}
    taken: dict[str, str] = {}
    pairs: list[Pair] = []
    notes: list[str] = []
    for layer in layers:  # pass 1: weights decide
        found = candidates[layer.name]
        if len(found) == 1 and found[0][0] not in taken:
            taken[found[0][0]] = layer.name
            pairs.append(Pair(layer.name, found[0][0], keras_kind(layer), found[0][1]))
    for layer in layers:  # pass 2: weights equal several modules: the first free one in execution order
        found = [c for c in candidates[layer.name] if c[0] not in taken]
        if len(candidates[layer.name]) > 1 and found and not any(p.keras_layer == layer.name for p in pairs):
            taken[found[0][0]] = layer.name
            pairs.append(Pair(layer.name, found[0][0], keras_kind(layer), BY_ORDER))
            notes.append(f"{layer.name}: weights equal those of {', '.join(c[0] for c in candidates[layer.name])}; "
                         f"mapped to {found[0][0]} by order")
    for layer in layers:  # pass 3: no module has these weights: same kind and shape, by order
        if any(p.keras_layer == layer.name for p in pairs):
            continue
        shapes = [w.shape for w in keras_weights(layer)]
        free = [c for c in calls if c.kind == keras_kind(layer) and c.name not in taken
                and [w.shape for w in torch_weights(modules[c.name])] == shapes]
        if free:
            taken[free[0].name] = layer.name
            pairs.append(Pair(layer.name, free[0].name, keras_kind(layer), BY_ORDER))
            notes.append(f"{layer.name}: no module has its weights; mapped to {free[0].name} by order and type")
    return pairs, notes


def _candidates(layer, calls: list[TorchCall], modules) -> list[tuple[str, str]]:
    kind, arrays = keras_kind(layer), keras_weights(layer)
    chw = _flatten_chw(layer) if kind == "linear" else None
    found = []
    for call in calls:
        if call.kind != kind:
            continue
        reference = torch_weights(modules[call.name])
        if weights_equal(arrays, reference):
            found.append((call.name, BY_WEIGHTS))
        elif chw and reference[0].shape[1] == chw[0] * chw[1] * chw[2] and weights_equal(arrays, [nhwc_flatten_weight(reference[0], chw)]):
            found.append((call.name, BY_WEIGHTS_NHWC))
        elif kind in ("conv", "linear") and _inputs_permuted(arrays[0], reference[0]):
            found.append((call.name, BY_WEIGHTS_PERMUTED))
    return found


def _inputs_permuted(ours, theirs) -> bool:
    """The same kernel with its input channels (axis 1) in another order, copied exactly: a port that
    reorders channels upstream (a space-to-depth in TF's order, say) and the kernel to match."""
    if ours.shape != theirs.shape or ours.ndim < 2 or ours.shape[1] < 2:
        return False
    slices = {np.ascontiguousarray(theirs[:, j]).tobytes() for j in range(theirs.shape[1])}
    if len(slices) != theirs.shape[1]:
        return False  # repeated channels: a permutation would not be decided
    return all(np.ascontiguousarray(ours[:, i]).tobytes() in slices for i in range(ours.shape[1])) and \
        {np.ascontiguousarray(ours[:, i]).tobytes() for i in range(ours.shape[1])} == slices


def _flatten_chw(dense) -> tuple[int, int, int] | None:
    """(C, H, W) of the NHWC tensor a Flatten in front of this Dense flattens, if any."""
    source = producer(dense)
    if source is None or type(source).__name__ != "Flatten":
        return None
    shape = input_shape(source)
    if len(shape) != 4 or getattr(source, "data_format", "channels_last") != "channels_last" or None in shape[1:]:
        return None
    return shape[3], shape[1], shape[2]


def _activation(layer) -> str | None:
    act = getattr(layer, "activation", None) if keras_kind(layer) in WEIGHTED_KINDS else None
    return getattr(act, "__name__", None) if act is not None else None


def _map_free(layers, calls: list[TorchCall], anchors: dict[str, str]) -> list[Pair]:
    """Parameter-free layers by kind and order within each stretch between mapped weighted layers."""
    keras_groups = _groups([(layer.name, keras_kind(layer)) for layer in layers], {k: k for k in anchors}, fused=_fused(layers))
    torch_anchor = {module: keras for keras, module in anchors.items()}
    torch_groups = _groups([(c.name, c.kind) for c in calls if c.kind], torch_anchor, fused={})
    pairs = []
    for anchor, items in keras_groups.items():
        theirs = list(torch_groups.get(anchor, []))
        for name, kind, fused in items:
            match = next((t for t in theirs if t[1] == kind), None)
            if match:
                theirs.remove(match)
                pairs.append(Pair(name, match[0], kind, FUSED if fused else BY_ORDER))
    return pairs


def _fused(layers) -> dict[str, bool]:
    return {layer.name: True for layer in layers if _activation(layer) not in (None, "linear")}


def _groups(items: list[tuple[str, str]], anchors: dict[str, str], fused: dict[str, bool]) -> dict:
    """Free items grouped by the last weighted item (named by its Keras layer) before them."""
    groups: dict[str | None, list[tuple[str, str, bool]]] = {}
    anchor = None
    for name, kind in items:
        if kind in WEIGHTED_KINDS:
            anchor = anchors.get(name, anchor)
            if fused.get(name):
                groups.setdefault(anchor, []).append((name, "act", True))
            continue
        groups.setdefault(anchor, []).append((name, kind, False))
    return groups
