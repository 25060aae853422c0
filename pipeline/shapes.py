"""Dynamic dimensions: the sizes a named dimension may take, the shapes the export traces and the
shapes the audit runs.

A shape is a mapping {dimension name: size}; names left out keep the example size (the config's
`shape`). Only config and inputs are imported here, so every stage can use it.
"""
from __future__ import annotations

from pathlib import Path

from pipeline.config import DimConstraint
from pipeline.inputs import TensorSpec, generate, save_npz, with_edge_cases

Sizes = dict[str, int]


def example_sizes(specs: list[TensorSpec]) -> Sizes:
    """Each dynamic name and its example size, in the order the inputs declare them."""
    sizes: Sizes = {}
    for spec in specs:
        for axis, name in sorted(spec.dynamic.items()):
            sizes.setdefault(name, spec.shape[axis])
    return sizes


def is_dynamic(specs: list[TensorSpec]) -> bool:
    return any(spec.dynamic for spec in specs)


def constraint_of(dims: dict[str, dict], name: str) -> DimConstraint:
    return DimConstraint.model_validate(dims.get(name, {}))


def nearest_allowed(constraint: DimConstraint, target: int, odd: bool = False) -> int | None:
    """The allowed size closest to `target` (odd ones first when asked and the multiple allows), or None."""
    step, low = constraint.multiple_of, constraint.min
    high = constraint.max if constraint.max is not None else max(target, low) * 2 + step
    first = -(-low // step) * step
    allowed = range(first, high + 1, step)
    if not allowed:
        return None
    ranked = sorted(allowed, key=lambda size: (odd and size % 2 == 0, abs(size - target), size))
    return ranked[0]


def label(sizes: Sizes) -> str:
    """A shape's name in file names and reports: 'batch3_height49'; '' is the example shape."""
    return "_".join(f"{name}{size}" for name, size in sizes.items())


def inputs_name(sizes: Sizes) -> str:
    """The input set of an extra audited shape, beside inputs.npz: inputs_batch3_height49.npz."""
    return f"inputs_{label(sizes)}.npz"


def write_input_sets(folder: Path, specs: list[TensorSpec], extra: list[Sizes], samples: int, seed: int) -> None:
    """One seeded input set per extra shape, edge cases appended, beside inputs.npz (inputs_<shape>.npz)."""
    for sizes in extra:
        sized = [spec.at(sizes) for spec in specs]
        save_npz(folder / inputs_name(sizes), with_edge_cases(generate(sized, samples, seed), sized))


def outputs_key(backend: str, sizes: Sizes) -> str:
    """A backend's outputs at an extra shape, in outputs/: 'tflite_fp32@batch3' (the example's: 'tflite_fp32')."""
    return f"{backend}@{label(sizes)}" if sizes else backend


def describe(sizes: Sizes, example: Sizes) -> str:
    """'batch 3, height 49, width 64' with every dynamic dimension; the example's own sizes fill the rest."""
    return ", ".join(f"{name} {sizes.get(name, size)}" for name, size in example.items())


def export_sizes(specs: list[TensorSpec], dims: dict[str, dict]) -> Sizes:
    """Sizes for the example the export traces: a dimension of size 0 or 1 is specialized by torch.export
    (it cannot tell a broadcast from a batch of one), so it is traced at the smallest allowed size >= 2."""
    traced = {}
    for name, size in example_sizes(specs).items():
        if size < 2:
            bumped = nearest_allowed(constraint_of(dims, name), 2)
            traced[name] = bumped if bumped is not None and bumped >= 2 else size
    return traced


def default_audit_shapes(specs: list[TensorSpec], dims: dict[str, dict]) -> list[Sizes]:
    """Two shapes besides the example: batch dimensions (those at axis 0) at 3, and the others moved
    away from the example, one of them odd where its constraints allow (then batch at 2)."""
    example = example_sizes(specs)
    batch = [n for n in example if any(s.dynamic.get(0) == n for s in specs)]
    others = [n for n in example if n not in batch]
    shapes: list[Sizes] = []
    if batch:
        shapes.append(_pick({n: 3 for n in batch}, dims, example))
    if others:
        grown = {n: round(example[n] * (0.75 if i % 2 == 0 else 1.25)) for i, n in enumerate(others)}
        shapes.append({**_pick({n: 2 for n in batch}, dims, example), **_pick(grown, dims, example, odd_first=others[0])})
        if not batch:
            shapes.append(_pick({n: example[n] * 2 for n in others}, dims, example))
    elif batch:
        shapes.append(_pick({n: 2 if example[n] != 2 else 5 for n in batch}, dims, example))
    unique = []
    for shape in shapes:
        shape = {n: s for n, s in shape.items() if s != example[n]}
        if shape and shape not in unique:
            unique.append(shape)
    return unique


def _pick(targets: Sizes, dims: dict[str, dict], example: Sizes, odd_first: str | None = None) -> Sizes:
    picked = {}
    for name, target in targets.items():
        size = nearest_allowed(constraint_of(dims, name), max(target, 1), odd=name == odd_first)
        picked[name] = size if size is not None else example[name]
    return picked


def audit_shapes(specs: list[TensorSpec], dims: dict[str, dict], configured: list[Sizes] | None) -> list[Sizes]:
    """The shapes the audit runs besides the example: the config's `audit_shapes`, else the defaults."""
    if not is_dynamic(specs):
        return []
    return [dict(s) for s in configured] if configured else default_audit_shapes(specs, dims)
