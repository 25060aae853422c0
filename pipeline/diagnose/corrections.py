"""Corrections to a port, and rebuilding the port with some of them applied.

A correction edits layer configs (epsilon, padding, slope, ...), may insert a built-in layer
in front of one (ZeroPadding2D where TF has no padding mode PyTorch's pads match, Permute before
a Flatten) and may replace weights (a bias PyTorch has and the port lacks). The rebuilt model
keeps every layer name and every weight of the port.
"""
from __future__ import annotations

import contextlib
import copy
from dataclasses import dataclass
from typing import Any, Iterator

import numpy as np


@dataclass(frozen=True)
class Edit:
    """Set keys of one layer's config; class_name replaces the layer's class (same name, no weights)."""

    layer: str
    changes: tuple[tuple[str, Any], ...]
    class_name: str | None = None


@dataclass(frozen=True)
class Insert:
    """A new parameter-free built-in layer in front of `before`."""

    before: str
    class_name: str
    name: str
    config: tuple[tuple[str, Any], ...]


@dataclass(frozen=True)
class Correction:
    description: str
    edits: tuple[Edit, ...] = ()
    inserts: tuple[Insert, ...] = ()
    weights: tuple[tuple[str, tuple[np.ndarray, ...]], ...] = ()
    affects_inference: bool = True  # BN momentum, say, matters only for training


# Attributes Keras 3 layers read at call time, not at build time: a correction that only sets
# these can be tried on the live port (and undone) instead of rebuilding it, which is what makes
# explaining 70 BatchNorm findings one by one take seconds instead of minutes.
CALL_TIME_ATTRIBUTES = frozenset({"epsilon", "momentum", "negative_slope", "padding", "strides", "dilation_rate",
                                  "pool_size", "interpolation", "alpha", "max_value", "threshold"})


@contextlib.contextmanager
def corrected(port, corrections: list[Correction]) -> Iterator[object]:
    """The port with these corrections: patched in place and restored afterwards when every change
    is a call-time attribute, else rebuilt."""
    edits = [edit for c in corrections for edit in c.edits]
    if any(c.inserts or c.weights for c in corrections) or any(
            edit.class_name or not CALL_TIME_ATTRIBUTES.issuperset(dict(edit.changes)) for edit in edits):
        yield rebuild(port, corrections)
        return
    saved = [(port.get_layer(edit.layer), key, getattr(port.get_layer(edit.layer), key)) for edit in edits for key, _ in edit.changes]
    try:
        for edit in edits:
            for key, value in edit.changes:
                setattr(port.get_layer(edit.layer), key, tuple(value) if isinstance(value, list) else value)
        yield port
    finally:
        for layer, key, value in reversed(saved):
            setattr(layer, key, value)


def rebuild(port, corrections: list[Correction]):
    """A new Keras model: the port's config with the corrections, the port's weights."""
    config = copy.deepcopy(port.get_config())
    sequential = type(port).__name__ == "Sequential"
    for correction in corrections:
        for edit in correction.edits:
            _edit(_entry(config, edit.layer, sequential), edit)
        for insert in correction.inserts:
            _insert(config, insert, sequential)
    model = type(port).from_config(config)
    _copy_weights(port, model)
    for correction in corrections:
        for name, arrays in correction.weights:
            model.get_layer(name).set_weights(list(arrays))
    return model


def _entry(config: dict, name: str, sequential: bool) -> dict:
    for entry in config["layers"]:
        if entry.get("name", entry["config"].get("name")) == name or entry["config"].get("name") == name:
            return entry
    raise KeyError(f"layer {name} not in the port's config")


def _edit(entry: dict, edit: Edit) -> None:
    if edit.class_name:
        keep = {k: entry["config"][k] for k in ("name", "trainable", "dtype") if k in entry["config"]}
        entry.update(module="keras.layers", class_name=edit.class_name, registered_name=None, config=keep)
    entry["config"].update(dict(edit.changes))
    entry.pop("build_config", None)


def _insert(config: dict, insert: Insert, sequential: bool) -> None:
    target = _entry(config, insert.before, sequential)
    layer_config = {"name": insert.name, "trainable": True, **dict(insert.config)}
    new = {"module": "keras.layers", "class_name": insert.class_name, "config": layer_config, "registered_name": None}
    index = config["layers"].index(target)
    target.pop("build_config", None)
    if not sequential:
        new["name"] = insert.name
        new["inbound_nodes"] = target["inbound_nodes"]
        tensor = target["inbound_nodes"][0]["args"][0]["config"]  # the tensor the target read, now the new layer's input
        target["inbound_nodes"] = [{"args": [{"class_name": "__keras_tensor__", "config": {
            "shape": _output_shape(new, tensor["shape"]), "dtype": tensor.get("dtype", "float32"),
            "keras_history": [insert.name, 0, 0]}}], "kwargs": {}}]
    config["layers"].insert(index, new)


def _output_shape(entry: dict, input_shape: list) -> list:
    import keras

    layer = keras.layers.deserialize({k: entry[k] for k in ("module", "class_name", "config", "registered_name")})
    return list(layer.compute_output_shape(tuple(input_shape)))


def _copy_weights(source, target) -> None:
    for layer in target.layers:
        try:
            original = source.get_layer(layer.name)
        except ValueError:
            continue  # an inserted layer
        weights = original.get_weights()
        if weights and len(weights) == len(layer.weights):
            layer.set_weights(weights)
