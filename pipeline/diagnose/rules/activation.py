"""Activations: function, LeakyReLU slope (Keras' old default 0.3, Activation('leaky_relu') 0.2,
PyTorch 0.01), GELU approximation, ReLU6/clipping, ELU alpha. Fused activations included."""
from __future__ import annotations

from dataclasses import dataclass

from torch import nn

from pipeline.diagnose.corrections import Correction, Edit
from pipeline.diagnose.mapping import FUSED
from pipeline.artifacts.diagnose_record import Finding
from pipeline.diagnose.rules import PairContext, rule, same_float32

ALIASES = {"swish": "silu", "hard_swish": "hard_silu"}
SIMPLE = ("relu", "relu6", "gelu", "silu", "sigmoid", "tanh", "hard_silu", "elu")


@dataclass(frozen=True)
class Act:
    """An activation function and its parameter (slope, max value, approximation, alpha)."""

    function: str
    parameter: object = None

    def text(self) -> str:
        return self.function if self.parameter is None else f"{self.function}({self.parameter})"


def torch_act(module: nn.Module) -> Act:
    if isinstance(module, nn.LeakyReLU):
        return Act("leaky_relu", float(module.negative_slope))
    if isinstance(module, (nn.ReLU6,)) or (isinstance(module, nn.Hardtanh) and (module.min_val, module.max_val) == (0.0, 6.0)):
        return Act("relu6")
    if isinstance(module, nn.Hardtanh):
        return Act("hardtanh", (module.min_val, module.max_val))
    if isinstance(module, nn.GELU):
        return Act("gelu", None if module.approximate == "none" else module.approximate)
    if isinstance(module, nn.ELU):
        return Act("elu", None if module.alpha == 1.0 else float(module.alpha))
    names = {nn.ReLU: "relu", nn.SiLU: "silu", nn.Sigmoid: "sigmoid", nn.Tanh: "tanh", nn.Hardswish: "hard_silu"}
    return Act(next(v for k, v in names.items() if isinstance(module, k)))


def keras_act(layer, fused: bool) -> Act:
    kind = type(layer).__name__
    if not fused and kind == "LeakyReLU":
        return Act("leaky_relu", float(layer.negative_slope))
    if not fused and kind == "ReLU":
        return _relu(layer)
    if not fused and kind == "ELU":
        return Act("elu", None if float(layer.alpha) == 1.0 else float(layer.alpha))
    name = getattr(layer.activation, "__name__", str(layer.activation))
    name = ALIASES.get(name, name)
    return Act("leaky_relu", 0.2) if name == "leaky_relu" else Act(name)


def _relu(layer) -> Act:
    slope, top = float(layer.negative_slope), layer.max_value
    if slope:
        return Act("leaky_relu", slope)
    if top is None:
        return Act("relu")
    return Act("relu6") if float(top) == 6.0 else Act("hardtanh", (0.0, float(top)))


@rule("activation", "act")
def activation(ctx: PairContext) -> list[Finding]:
    fused = ctx.pair.method == FUSED
    expected, actual = torch_act(ctx.module), keras_act(ctx.layer, fused)
    if expected.function == actual.function and _same(expected.parameter, actual.parameter):
        return []
    where = f"the activation fused into '{ctx.layer.name}'" if fused else f"'{ctx.layer.name}'"
    attribute = _attribute(expected, actual)
    hint = " (Keras 2's default slope 0.3)" if actual.parameter == 0.3 else " (Activation('leaky_relu') uses 0.2)" if (
        actual.parameter == 0.2 and type(ctx.layer).__name__ == "Activation") else ""
    correction = _correction(ctx, expected, fused)
    fix = f"; fix: {correction.description}" if correction else "; no built-in Keras layer computes it (needs a custom layer)"
    return [ctx.finding(
        "activation", "error", attribute, expected.text(), actual.text(),
        f"{where} computes {actual.text()}{hint}, PyTorch's {ctx.pair.module} {expected.text()}{fix}",
        correction=correction,
    )]


def _same(a, b) -> bool:
    if isinstance(a, float) and isinstance(b, float):
        return same_float32(a, b)
    return a == b


def _attribute(expected: Act, actual: Act) -> str:
    if expected.function != actual.function:
        return "function"
    return {"leaky_relu": "negative_slope", "gelu": "approximate", "elu": "alpha", "hardtanh": "max_value"}.get(
        expected.function, "parameter")


def _correction(ctx: PairContext, expected: Act, fused: bool) -> Correction | None:
    name = ctx.layer.name
    if expected.function == "leaky_relu" and not fused:
        slope = expected.parameter
        if type(ctx.layer).__name__ in ("LeakyReLU", "ReLU"):
            return Correction(f"negative_slope={slope:g}", edits=(Edit(name, (("negative_slope", slope),)),))
        return Correction(f"LeakyReLU(negative_slope={slope:g})", edits=(Edit(name, (("negative_slope", slope),), "LeakyReLU"),))
    if expected.function in SIMPLE and expected.parameter is None:
        if fused or type(ctx.layer).__name__ == "Activation":
            return Correction(f"activation='{expected.function}'", edits=(Edit(name, (("activation", expected.function),)),))
        return Correction(f"Activation('{expected.function}')", edits=(Edit(name, (("activation", expected.function),), "Activation"),))
    if expected.function == "hardtanh" and expected.parameter[0] == 0.0 and not fused:
        return Correction(f"ReLU(max_value={expected.parameter[1]:g})",
                          edits=(Edit(name, (("max_value", expected.parameter[1]), ("negative_slope", 0.0), ("threshold", 0.0)), "ReLU"),))
    if expected.function == "elu" and not fused:
        alpha = expected.parameter or 1.0
        return Correction(f"ELU(alpha={alpha:g})", edits=(Edit(name, (("alpha", alpha),), "ELU"),))
    return None
