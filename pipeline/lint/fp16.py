"""What float16 storage does to a graph's float constants, shared by the fp16_* rules and the fp16 cure.

A TFLite fp16 file stores its float constants as float16 and computes in float32 on CPU. Measured with
TensorFlow 2.21's converter (`supported_types=[tf.float16]`): 1e-12 is stored as 0, 1e-6 as the
subnormal 9.98e-07, and -3.4e38, -1e9 and 1e5 are clamped to -65504, -65504 and 65504 (not made
infinite, as numpy's and PyTorch's casts to float16 do).

A constant here is one a node reads: an input that is an initializer or a Constant node's output, or
the `epsilon` attribute of a normalisation node. Findings name the node that reads it.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator

import numpy as np
import onnx

from pipeline.lint.context import LintContext

FP16_MAX = float(np.finfo(np.float16).max)  # 65504
FP16_TINY = float(np.finfo(np.float16).tiny)  # 6.1035e-05, the smallest normal float16
FP16_ZERO_BELOW = float(np.finfo(np.float16).smallest_subnormal) / 2  # 2.98e-08: rounds to 0
NORM_OPS = ("LayerNormalization", "BatchNormalization", "InstanceNormalization", "GroupNormalization")
# Ops whose result is Inf or NaN at 0: what a small constant added before them (an epsilon) protects.
ZERO_SENSITIVE = ("Sqrt", "Reciprocal", "Log", "Div", "Pow")
PASS_THROUGH = ("Cast", "Identity", "Reshape", "Unsqueeze", "Squeeze", "Expand")
FLOAT_TYPES = (np.float16, np.float32, np.float64)


@dataclass(frozen=True)
class Slot:
    """One float constant a node reads: input `index` (the tensor `name`), or the attribute `name` (index -1)."""

    node: onnx.NodeProto
    name: str
    index: int
    values: np.ndarray

    @property
    def is_attribute(self) -> bool:
        return self.index < 0

    def describe(self) -> str:
        return self.name if self.is_attribute else f"input {self.index} ('{self.name}')"


def slots(ctx: LintContext) -> Iterator[Slot]:
    """Every float constant every node reads (Constant nodes themselves are skipped: their readers are named)."""
    for node in ctx.nodes:
        if node.op_type == "Constant":
            continue
        if node.op_type in NORM_OPS and node.domain in ("", "ai.onnx"):
            epsilon = ctx.attrs(node).get("epsilon", 1e-5)
            yield Slot(node, "epsilon", -1, np.asarray(epsilon, dtype=np.float64))
        for index, name in enumerate(node.input):
            value = ctx.constant(name) if name else None
            if value is not None and value.dtype.type in FLOAT_TYPES and value.size:
                yield Slot(node, name, index, value)


def as_stored(values: np.ndarray) -> np.ndarray:
    """The values as a TFLite fp16 file holds them: clamped to the float16 range, rounded to float16."""
    return np.clip(values.astype(np.float64), -FP16_MAX, FP16_MAX).astype(np.float16).astype(np.float64)


def underflows(values: np.ndarray) -> np.ndarray:
    """Nonzero values float16 flushes to zero or holds as a subnormal (below its smallest normal)."""
    magnitude = np.abs(values.astype(np.float64))
    return (magnitude > 0) & (magnitude < FP16_TINY)


def overflows(values: np.ndarray) -> np.ndarray:
    magnitude = np.abs(values.astype(np.float64))
    return np.isfinite(magnitude) & (magnitude > FP16_MAX)


def consumers(ctx: LintContext) -> dict[str, list[tuple[onnx.NodeProto, int]]]:
    """tensor -> the nodes that read it, with the input position."""
    found: dict[str, list[tuple[onnx.NodeProto, int]]] = {}
    for node in ctx.nodes:
        for index, name in enumerate(node.input):
            if name:
                found.setdefault(name, []).append((node, index))
    return found


def readers(users: dict, tensor: str, depth: int = 3) -> list[tuple[onnx.NodeProto, int]]:
    """The nodes that read `tensor`, looking through casts and reshapes (up to `depth` of them)."""
    found = []
    for node, index in users.get(tensor, []):
        if node.op_type in PASS_THROUGH and depth > 0 and index == 0:
            found += readers(users, node.output[0], depth - 1)
        else:
            found.append((node, index))
    return found


def zero_sensitive(node: onnx.NodeProto, index: int) -> bool:
    """Whether this input of this node gives Inf or NaN when it is 0 (a Div's denominator, Sqrt's argument, ...)."""
    if node.op_type == "Div":
        return index == 1
    if node.op_type == "Pow":
        return index == 0  # 0 ** negative exponent (x ** -0.5 is how some exporters write Rsqrt)
    return node.op_type in ZERO_SENSITIVE


def module_of(ctx: LintContext, node: onnx.NodeProto) -> tuple[str | None, str]:
    """The PyTorch module a node came from, and how it was found (or why not)."""
    where = ctx.attribute(node)
    return where.module, where.describe()


def in_module(module: str | None) -> str:
    return f" in {module}" if module else ""


def fmt(value: float) -> str:
    return f"{value:.4g}"
