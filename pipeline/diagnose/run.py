"""Running both sides on the same samples: PyTorch (float32 and the float64 oracle) with
forward hooks, and the Keras port with its inputs and intermediates mapped to PyTorch's layout."""
from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
import torch

from pipeline.diagnose.kinds import torch_kind
from pipeline.errors import UsageError
from pipeline.inputs import Feed, TensorSpec, feeds


@dataclass(frozen=True)
class TorchCall:
    """One leaf module as PyTorch ran it (first call), in execution order."""

    name: str
    kind: str | None
    input_shape: tuple[int, ...]
    output_shape: tuple[int, ...]


def trace_torch(model: torch.nn.Module, feed: Feed, specs: list[TensorSpec]) -> list[TorchCall]:
    """Leaf modules in the order they finish, with their input and output shapes."""
    calls: dict[str, TorchCall] = {}

    def hook(name):
        def record(module, args, output):
            if name not in calls and args and isinstance(args[0], torch.Tensor) and isinstance(output, torch.Tensor):
                calls[name] = TorchCall(name, torch_kind(module), tuple(args[0].shape), tuple(output.shape))
        return record

    leaves = [(n, m) for n, m in model.named_modules() if n and not list(m.children())]
    handles = [m.register_forward_hook(hook(n)) for n, m in leaves]
    try:
        _forward(model, feed, specs, torch.float32)
    finally:
        for handle in handles:
            handle.remove()
    return list(calls.values())


def run_torch(model: torch.nn.Module, samples: dict[str, np.ndarray], specs: list[TensorSpec],
              names: list[str], dtype: torch.dtype) -> tuple[list[np.ndarray], dict[str, np.ndarray]]:
    """Outputs and the named modules' outputs, stacked by sample, as float64 arrays."""
    modules = dict(model.named_modules())
    per_layer: dict[str, list[np.ndarray]] = {name: [] for name in names}

    def hook(name):
        def record(module, args, output):
            if isinstance(output, torch.Tensor) and len(per_layer[name]) < sample_index[0] + 1:
                per_layer[name].append(output.detach().to(torch.float64).numpy().copy())
        return record

    sample_index = [0]
    handles = [modules[n].register_forward_hook(hook(n)) for n in names]
    outputs: list[list[np.ndarray]] = []
    try:
        for i, feed in enumerate(feeds(samples)):
            sample_index[0] = i
            outputs.append(_forward(model, feed, specs, dtype))
    finally:
        for handle in handles:
            handle.remove()
    stacked = [np.stack([o[k] for o in outputs]) for k in range(len(outputs[0]))]
    return stacked, {n: np.stack(v) for n, v in per_layer.items() if len(v) == len(outputs)}


def _forward(model, feed: Feed, specs: list[TensorSpec], dtype: torch.dtype) -> list[np.ndarray]:
    tensors = [torch.from_numpy(np.array(feed[s.name])) for s in specs]
    tensors = [t.to(dtype) if t.is_floating_point() else t for t in tensors]
    with torch.no_grad():
        result = model(*tensors)
    results = list(result) if isinstance(result, (tuple, list)) else [result]
    return [r.detach().to(torch.float64).numpy() for r in results]


@dataclass(frozen=True)
class PortLayout:
    """How the port reads PyTorch's tensors: channels_last (NHWC) or channels_first (as PyTorch)."""

    channels_last: bool

    @property
    def name(self) -> str:
        return "channels_last (NHWC)" if self.channels_last else "channels_first (NCHW, as PyTorch)"

    def to_port(self, array: np.ndarray) -> np.ndarray:
        return np.moveaxis(array, 1, -1) if self.channels_last and array.ndim >= 3 else array

    def to_torch(self, array: np.ndarray, torch_shape: tuple[int, ...]) -> np.ndarray | None:
        """A port tensor in PyTorch's layout, or None when it cannot be read as that shape."""
        if self.channels_last and array.ndim >= 3:
            moved = np.moveaxis(array, -1, 1)
            if moved.shape == torch_shape:
                return moved
        return array if array.shape == torch_shape else None


def decide_layout(port, specs: list[TensorSpec], path) -> PortLayout:
    """channels_last when the port's inputs take the config's inputs transposed, else as they are."""
    shapes = [tuple(t.shape) for t in port.inputs]
    if len(shapes) != len(specs):
        raise UsageError(f"--keras {path}: the port has {len(shapes)} inputs, the config {len(specs)} "
                         f"({', '.join(s.name for s in specs)}); they must correspond in order")
    readings = [layout for layout in (PortLayout(True), PortLayout(False))
                if all(_fits(shape, layout.to_port(np.empty(spec.shape)).shape) for shape, spec in zip(shapes, specs))]
    if not readings:
        spec, shape = specs[0], shapes[0]
        raise UsageError(f"--keras {path}: its input shape {_show(shape)} cannot take the config's input "
                         f"'{spec.name}' {list(spec.shape)} (as NHWC: {list(PortLayout(True).to_port(np.empty(spec.shape)).shape)}); "
                         "fix the port's Input shape or the config's 'inputs'")
    if len(readings) == 2 and any(getattr(layer, "data_format", "") == "channels_first" for layer in port.layers):
        return PortLayout(False)
    return readings[0]


def _fits(port_shape: tuple, torch_shape: tuple) -> bool:
    return len(port_shape) == len(torch_shape) and all(p is None or p == t for p, t in zip(port_shape, torch_shape))


def _show(shape: tuple) -> str:
    return "(" + ", ".join("None" if d is None else str(d) for d in shape) + ")"


def run_port(model, samples: dict[str, np.ndarray], specs: list[TensorSpec], layout: PortLayout) -> list[np.ndarray]:
    """Every output of a Keras model, stacked by sample, as float64 arrays in the port's layout.

    When every input has a free batch axis, all samples go through in one call (the model is
    run once instead of once per sample); otherwise one call per sample."""
    count = len(next(iter(samples.values())))
    if all(t.shape[0] is None for t in model.inputs) and all(len(s.shape) >= 1 for s in specs):
        batch = [layout.to_port(samples[s.name].reshape(-1, *s.shape[1:])) for s in specs]
        return [r.reshape(count, -1, *r.shape[1:]) for r in _call(model, batch)]
    per_sample = [_call(model, [layout.to_port(np.asarray(feed[s.name])) for s in specs]) for feed in feeds(samples)]
    return [np.stack([s[k] for s in per_sample]) for k in range(len(per_sample[0]))]


def _call(model, args: list[np.ndarray]) -> list[np.ndarray]:
    with warnings.catch_warnings():  # Keras warns when a one-input model's input structure is a list
        warnings.simplefilter("ignore", UserWarning)
        result = model(args if len(args) > 1 else args[0], training=False)
    results = list(result) if isinstance(result, (list, tuple)) else [result]
    return [np.asarray(r, dtype=np.float64) for r in results]


def probe_model(port, layer_names: list[str]):
    """A model with the port's outputs first, then the named layers' outputs.

    A Sequential port is probed as a chain of its own layers (built without an Input, its layers
    hold more than one node, and `layer.output` is ambiguous)."""
    import keras

    if type(port).__name__ == "Sequential":
        return _SequentialProbe(port, layer_names)
    return keras.Model(port.inputs, list(port.outputs) + [port.get_layer(n).output for n in layer_names])


class _SequentialProbe:
    """Calls a Sequential port's layers one by one, eagerly, keeping the named layers' outputs."""

    def __init__(self, port, layer_names: list[str]) -> None:
        self.layers, self.names = port.layers, layer_names
        self.inputs = port.inputs

    def __call__(self, x, training: bool = False):
        kept = {}
        for layer in self.layers:
            x = layer(x, training=training) if _takes_training(layer) else layer(x)
            kept[layer.name] = x
        return [x] + [kept[n] for n in self.names]


def _takes_training(layer) -> bool:
    return type(layer).__name__ in ("BatchNormalization", "Dropout", "SpatialDropout2D", "GaussianNoise")
