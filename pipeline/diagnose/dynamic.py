"""A port of a model whose config declares dynamic dimensions (inputs[*].dynamic, dims, audit_shapes).

The port must keep those dimensions free: `None` in its Input where the config names one. And it is
compared with PyTorch at every shape the audit would run, not only at the example: a port can be
faithful at one size and wrong at another (TF 'same' padding on a stride-2 conv pads as PyTorch's
symmetric padding does at odd sizes, and not at even ones).
"""
from __future__ import annotations

import numpy as np

from pipeline import shapes
from pipeline.artifacts.diagnose_record import Finding, ShapeCheck
from pipeline.config import ModelConfig
from pipeline.diagnose.compare import output_error, reference_run
from pipeline.diagnose.run import PortLayout, run_port
from pipeline.inputs import TensorSpec, generate, with_edge_cases


def port_axis(axis: int, rank: int, layout: PortLayout) -> int:
    """Where PyTorch's axis sits in the port's input (channels_last moves axis 1 to the end)."""
    if not layout.channels_last or rank < 3:
        return axis
    return rank - 1 if axis == 1 else axis - (1 if axis > 1 else 0)


def fixed_axes(port, specs: list[TensorSpec], layout: PortLayout) -> list[Finding]:
    """An error per dynamic dimension the port's Input fixes to a size."""
    return [_fixed(*held) for held in _held(port, specs, layout)]


def _held(port, specs: list[TensorSpec], layout: PortLayout) -> list[tuple]:
    """(input, axis, name, the port's input shape, its size there) for each dynamic axis the port fixes."""
    held = []
    for tensor, spec in zip(port.inputs, specs):
        port_shape = tuple(tensor.shape)
        for axis, name in sorted(spec.dynamic.items()):
            size = port_shape[port_axis(axis, len(spec.shape), layout)]
            if size is not None:
                held.append((spec, axis, name, port_shape, size))
    return held


def _fixed(spec: TensorSpec, axis: int, name: str, port_shape: tuple, size: int) -> Finding:
    wanted = ", ".join("None" if d is None else str(d) for d in port_shape)
    return Finding(
        rule="dynamic_dim", severity="error", keras_layer=None, module=f"input '{spec.name}'", attribute=f"axis {axis}",
        expected=f"None ('{name}')", actual=size,
        message=(f"the config makes input '{spec.name}' axis {axis} ('{name}') dynamic, but the port's Input fixes it "
                 f"at {size} (Input shape ({wanted})); build the port's Input with None there, or remove the axis "
                 "from the config's 'dynamic'"))


def at_other_shapes(port, model, specs: list[TensorSpec], layout: PortLayout, config: ModelConfig) -> list[ShapeCheck]:
    """The port against PyTorch and the float64 oracle at each shape besides the example, on that shape's
    own seeded samples and edge cases (the audit's shapes: `audit_shapes`, or the defaults)."""
    example = shapes.example_sizes(specs)
    dims = {name: c.model_dump() for name, c in config.dims.items()}
    configured = [dict(s) for s in config.audit_shapes] if config.audit_shapes else None
    frozen = {name for _, _, name, _, _ in _held(port, specs, layout)}
    return [_check(port, model, specs, layout, config, sizes, shapes.describe(sizes, example), frozen)
            for sizes in shapes.audit_shapes(specs, dims, configured)]


def _check(port, model, specs, layout, config, sizes: dict, where: str, frozen: set[str]) -> ShapeCheck:
    held = sorted(n for n in sizes if n in frozen)
    if held:
        return ShapeCheck(dict(sizes), where, None, f"not run: the port's Input fixes {', '.join(held)}")
    sized = [spec.at(sizes) for spec in specs]
    samples = with_edge_cases(generate(sized, config.samples, config.seed), sized)
    try:
        outputs = run_port(port, samples, sized, layout)
    except Exception as exc:  # noqa: BLE001 (Keras raises many types for an input it cannot take; recorded, not hidden)
        return ShapeCheck(dict(sizes), where, None, f"the port fails here: {type(exc).__name__}: {str(exc).splitlines()[0][:200]}")
    reference = reference_run(model, samples, sized, [])
    if len(outputs) != len(reference.fp32) or any(np.ndim(o) == 0 for o in outputs):
        return ShapeCheck(dict(sizes), where, None, "the port's outputs do not correspond to PyTorch's here")
    return ShapeCheck(dict(sizes), where, output_error(outputs, reference, layout))
