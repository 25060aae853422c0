"""Shared inputs: seeded samples every backend runs on, saved to inputs.npz.

inputs.npz holds one array per input name with a leading sample axis, so
`inputs["x"][i]` is the i-th sample of input x in the model's own layout.
"""
from __future__ import annotations

import io
import os
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from pipeline.config import InputSpec
from pipeline.errors import ConfigError

Feed = dict[str, np.ndarray]


@dataclass(frozen=True)
class TensorSpec:
    """A model input as the reference framework sees it (NCHW for images)."""

    name: str
    shape: tuple[int, ...]
    dtype: str
    low: float = 0.0
    high: float = 1.0
    dynamic: dict[int, str] = field(default_factory=dict)  # axis -> dimension name; `shape` is the example

    @classmethod
    def from_config(cls, spec: InputSpec) -> "TensorSpec":
        return cls(spec.name, tuple(spec.shape), spec.dtype, spec.low, spec.high, dict(spec.dynamic))

    def to_json(self) -> dict:
        raw = {"name": self.name, "shape": list(self.shape), "dtype": self.dtype, "low": self.low, "high": self.high}
        # Written only when there is one, so static records keep their shape.
        return {**raw, "dynamic": {str(a): n for a, n in sorted(self.dynamic.items())}} if self.dynamic else raw

    @classmethod
    def from_json(cls, raw: dict) -> "TensorSpec":
        dynamic = {int(a): n for a, n in raw.get("dynamic", {}).items()}
        return cls(raw["name"], tuple(raw["shape"]), raw["dtype"], raw.get("low", 0.0), raw.get("high", 1.0), dynamic)

    def at(self, sizes: dict[str, int]) -> "TensorSpec":
        """This input with its dynamic axes set to `sizes` (names left out keep the example size)."""
        shape = tuple(sizes.get(self.dynamic[a], d) if a in self.dynamic else d for a, d in enumerate(self.shape))
        return TensorSpec(self.name, shape, self.dtype, self.low, self.high, dict(self.dynamic))


def generate(specs: list[TensorSpec], samples: int, seed: int) -> dict[str, np.ndarray]:
    """Seeded uniform samples from each input's [low, high) range."""
    rng = np.random.default_rng(seed)
    return {spec.name: _sample(rng, spec, samples) for spec in specs}


def _floating(spec: TensorSpec) -> bool:
    """float16/32 from a config, float64 too from an ONNX file's own inputs (the ONNX route, `make suite`)."""
    return np.dtype(spec.dtype).kind == "f"


def _sample(rng: np.random.Generator, spec: TensorSpec, count: int) -> np.ndarray:
    shape = (count, *spec.shape)
    if _floating(spec):
        values = rng.uniform(spec.low, spec.high, size=shape).astype(spec.dtype)
        # Rounding to float16/32 can land on `high`; keep the documented half-open range.
        below_high = np.nextafter(np.array(spec.high, dtype=spec.dtype), np.array(spec.low, dtype=spec.dtype))
        return np.minimum(values, below_high) if spec.high > spec.low else values
    if spec.dtype == "bool":
        return rng.random(size=shape) < 0.5
    low, high = int(np.ceil(spec.low)), int(np.ceil(spec.high))
    return rng.integers(low, max(high, low + 1), size=shape, dtype=spec.dtype)


EDGE_CASES = ("zeros", "constant", "max_magnitude")


def with_edge_cases(arrays: dict[str, np.ndarray], specs: list[TensorSpec]) -> dict[str, np.ndarray]:
    """Append the edge-case samples (zeros, a constant, the largest magnitude in range)."""
    edges = {spec.name: np.stack([_edge(spec, case) for case in EDGE_CASES]) for spec in specs}
    return {name: np.concatenate([arrays[name], edges[name]]) for name in arrays}


def sample_labels(total: int, edge_cases: bool) -> list[str]:
    randoms = total - (len(EDGE_CASES) if edge_cases else 0)
    return [f"random_{i}" for i in range(randoms)] + (list(EDGE_CASES) if edge_cases else [])


def _edge(spec: TensorSpec, case: str) -> np.ndarray:
    if spec.dtype == "bool":
        return np.full(spec.shape, case != "zeros", dtype=bool)
    if _floating(spec):
        top = float(np.nextafter(np.array(spec.high, dtype=spec.dtype), np.array(spec.low, dtype=spec.dtype)))
        low = spec.low
    else:
        top, low = int(np.ceil(spec.high)) - 1, int(np.ceil(spec.low))
    values = {
        "zeros": min(max(0, low), top),
        # Three quarters of the way up the range, away from zero and from the midpoint (which is zero
        # for a symmetric range): a constant that exercises the model, unlike "zeros".
        "constant": low + 0.75 * (top - low) if _floating(spec) else low + (3 * (top - low)) // 4,
        "max_magnitude": top if abs(top) >= abs(low) else low,
    }
    return np.full(spec.shape, values[case], dtype=spec.dtype)


def load_user_inputs(path: Path, specs: list[TensorSpec]) -> dict[str, np.ndarray]:
    """A user's .npz keyed by input name: one sample (the input's shape) or several (a leading axis)."""
    if not path.is_file():
        raise ConfigError(f"--inputs {path}: file not found; check the path")
    try:
        arrays = load_npz(path)
    except (OSError, ValueError, zipfile.BadZipFile) as exc:
        raise ConfigError(f"--inputs {path}: not a readable .npz file ({exc}); save it with numpy.savez") from None
    expected = [spec.name for spec in specs]
    missing, extra = sorted(set(expected) - set(arrays)), sorted(set(arrays) - set(expected))
    if missing or extra:
        raise ConfigError(f"--inputs {path}: keys must be the model's inputs {expected}; missing {missing}, extra {extra}")
    return {spec.name: _checked(path, spec, arrays[spec.name]) for spec in specs}


def _checked(path: Path, spec: TensorSpec, array: np.ndarray) -> np.ndarray:
    if array.dtype != np.dtype(spec.dtype):
        raise ConfigError(f"--inputs {path}: '{spec.name}' has dtype {array.dtype}, the config says {spec.dtype}; cast it with .astype('{spec.dtype}')")
    if tuple(array.shape) == tuple(spec.shape):
        return array[None]
    if tuple(array.shape[1:]) == tuple(spec.shape):
        return array
    raise ConfigError(
        f"--inputs {path}: '{spec.name}' has shape {list(array.shape)}; expected {list(spec.shape)} "
        f"or [samples, {', '.join(map(str, spec.shape))}]"
    )


def feeds(samples: dict[str, np.ndarray]) -> list[Feed]:
    """Split stacked samples into one feed dict per sample."""
    count = len(next(iter(samples.values())))
    return [{name: array[i] for name, array in samples.items()} for i in range(count)]


def stack(per_sample: list[Feed]) -> dict[str, np.ndarray]:
    """The inverse of `feeds`: stack per-sample outputs along a leading axis."""
    return {name: np.stack([sample[name] for sample in per_sample]) for name in per_sample[0]}


def save_npz(path: Path, arrays: dict[str, np.ndarray]) -> None:
    """Save arrays byte-for-byte reproducibly (fixed zip timestamps), atomically."""
    tmp = path.with_name(f".{path.name}.tmp")
    with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_STORED) as archive:
        for name in sorted(arrays):
            buffer = io.BytesIO()
            np.lib.format.write_array(buffer, np.ascontiguousarray(arrays[name]), allow_pickle=False)
            info = zipfile.ZipInfo(f"{name}.npy", date_time=(1980, 1, 1, 0, 0, 0))
            archive.writestr(info, buffer.getvalue())
    os.replace(tmp, path)


def load_npz(path: Path) -> dict[str, np.ndarray]:
    with np.load(path, allow_pickle=False) as archive:
        return {name: archive[name] for name in archive.files}
