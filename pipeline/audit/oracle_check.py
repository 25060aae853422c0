"""An oracle checked before it judges: the float64 run must agree with the float32 reference
within what float32 rounding can explain, or it is not used.

The floor is measured as the float32 reference's distance from the oracle; a wrong oracle (say
a float64 graph whose Softmax normalizes over another axis) makes that floor as large as its
own error, and every candidate that shares the mistake then sits at 0x the floor. The check
bounds the reference-oracle distance from the model alone, never from the candidates:

- each op's float32 result lies within about sqrt(fan-in) roundings of its float64 value (the
  first-order model of noise.perturbed), MIN_ULPS times over for the order an engine sums in;
- through a graph of N ops these add at most linearly (all in one direction), so the output may
  move by N x MIN_ULPS x sqrt(fan-in) roundings of its scale, N counting every node (an upper
  bound on the depth); the largest fan-in is read from the weights;
- an ill-conditioned output (a norm over a nearly constant group) moves further: where the
  perturbed float64 runs measured that spread, NOISE_RATIO_BOUND times it is allowed too, as it
  is for a candidate.
On the measured models this bound is 1e2 to 1e4 times the real float32 error (NOISE.md: the
deep network's error is 2e-6 of its scale, its bound about 1e-3), while a wrong oracle parts
from the reference by a large fraction of the output's scale.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from pipeline.audit.noise import MIN_ULPS, NOISE_ATOL, NOISE_RATIO_BOUND, UNIT_ROUNDOFF, sample_errors


SUMMING_OPS = ("Conv", "ConvTranspose", "Gemm", "MatMul", "ConvInteger", "MatMulInteger", "QLinearConv", "QLinearMatMul")


@dataclass(frozen=True)
class RoundingBound:
    """How far, relative to an output's scale, float32 rounding can take a program from float64."""

    nodes: int
    fan_in: int

    @property
    def relative(self) -> float:
        return self.nodes * MIN_ULPS * math.sqrt(self.fan_in) * UNIT_ROUNDOFF

    @classmethod
    def of(cls, model) -> "RoundingBound":
        """From an ONNX model: its node count and the largest reduction a weight implies: the stored
        weights' shapes, and the inferred shape of every summing op's second input (a weight made by
        ConstantOfShape, as in onnx's light test models, or an activation in attention)."""
        from pipeline.model.graph import static_shapes

        tensors = list(model.graph.initializer) + [a.t for n in model.graph.node for a in n.attribute if a.HasField("t")]
        shapes = [list(t.dims) for t in tensors]
        try:
            inferred = static_shapes(model)
        except Exception:  # noqa: BLE001 - shape inference is a refinement here; the stored weights still count
            inferred = {}
        shapes += [inferred[n.input[1]] for n in model.graph.node
                   if n.op_type in SUMMING_OPS and len(n.input) > 1 and n.input[1] in inferred]
        fan_in = max([_fan_in(dims) for dims in shapes if all(d > 0 for d in dims)] + [1])
        return cls(max(1, len(model.graph.node)), fan_in)

    def describe(self) -> str:
        return (f"{self.relative:.2g} of the output's scale: {self.nodes} nodes x {MIN_ULPS:g} x sqrt(fan-in {self.fan_in}) "
                "float32 roundings")


def _fan_in(dims: list[int]) -> int:
    """The most terms a weight of this shape can put in one sum (a conv's in_channels x kernel, a
    matrix's rows or columns, whichever is larger)."""
    if len(dims) < 2:
        return 1
    return max(dims[0], int(np.prod(dims[1:])))


@dataclass(frozen=True)
class Rejection:
    """Why the oracle was not used."""

    reason: str
    first_divergence: dict | None = None

    def to_json(self) -> dict:
        return {"reason": self.reason, "first_divergence": self.first_divergence}


def check(reference_name: str, reference: dict[str, np.ndarray], truth: dict[str, np.ndarray], bound: RoundingBound,
          spreads: dict[str, list[np.ndarray]] | None = None) -> Rejection | None:
    """A Rejection when, on some output and sample, the float32 reference and the oracle part by
    more than rounding explains; None when the oracle may judge. `spreads`: the perturbed float64
    runs per output, where there are any."""
    for name, expected in truth.items():
        ref = reference.get(name)
        if ref is None or not np.issubdtype(np.asarray(ref).dtype, np.floating) or not np.all(np.isfinite(ref)):
            continue  # nothing float32 to hold it to: the comparisons report the reference's own problem
        allowed = allowed_distance(ref, expected, bound, (spreads or {}).get(name, []))
        errors = sample_errors(ref, expected)
        worst = int(np.argmax(errors - allowed))
        if errors[worst] > allowed[worst]:
            shape = "" if np.shape(ref) == np.shape(expected) else (
                f" (shapes {list(np.shape(ref)[1:])} and {list(np.shape(expected)[1:])})")
            return Rejection(f"the float64 oracle parts from {reference_name} float32 on '{name}' (sample {worst}) by "
                             f"{errors[worst]:.3g}{shape}, more than float32 rounding can explain ({allowed[worst]:.3g}: "
                             f"{bound.describe()})")
    return None


def allowed_distance(reference: np.ndarray, truth: np.ndarray, bound: RoundingBound,
                     spreads: list[np.ndarray]) -> np.ndarray:
    """Per sample: the distance between a correct float32 run and a correct float64 run that rounding explains."""
    samples = len(reference)
    scale = lambda a: np.abs(np.asarray(a, np.float64)).reshape(samples, -1).max(axis=1, initial=0.0)  # noqa: E731
    outputs = [scale(reference)] + ([scale(truth)] if np.shape(truth) == np.shape(reference) else [])
    allowed = bound.relative * np.maximum.reduce(outputs) + NOISE_ATOL
    for run in spreads:
        if np.shape(run) == np.shape(truth):
            allowed = np.maximum(allowed, NOISE_RATIO_BOUND * sample_errors(run, truth))
    return allowed


def first_divergence(onnx_path: Path, specs: list, feed: dict, workdir: Path) -> dict | None:
    """ONNX route: the first tensor, in graph order, where ONNX Runtime float32 and the float64 graph
    part by more than rounding explains (one sample; every typed intermediate of both)."""
    import onnx

    from pipeline.compare import run_all
    from pipeline.model.graph import TensorOrder
    from pipeline.runners.intermediates import onnx_intermediates_runner
    from pipeline.runners.onnxrt import OnnxFloat64Runner

    fp32 = onnx_intermediates_runner(onnx_path, specs, workdir)
    fp64 = OnnxFloat64Runner(fp32.onnx_path, specs, fp32.output_names)
    runs = run_all([fp32, fp64], [feed])
    low, high = runs[fp32.name], runs[fp64.name]
    model = onnx.load(str(onnx_path))
    order, bound = TensorOrder.of(model), RoundingBound.of(model)
    for name in order.tensors:
        if name not in low or name not in high or not np.issubdtype(low[name].dtype, np.floating):
            continue
        if not np.all(np.isfinite(low[name])):
            continue
        error = sample_errors(low[name], high[name])[0]
        allowed = allowed_distance(low[name], high[name], bound, [])[0]
        if error > allowed:
            node = order.producer[name]
            return {"tensor": name, "node": node.name, "op_type": node.op_type, "max_abs": float(error),
                    "allowed": float(allowed)}
    return None
