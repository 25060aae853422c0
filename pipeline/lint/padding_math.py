"""Pure helpers: PyTorch padding expressed as ONNX `pads`, and TF 'SAME' placement.

torch is imported only by the helpers that name its module types: the ONNX route's lint has no
PyTorch model, and importing torch there (about 1 s) would only compete with TensorFlow's import."""
from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch


def zero_pad_types() -> tuple[type, ...]:
    import torch

    return (torch.nn.ZeroPad1d, torch.nn.ZeroPad2d, torch.nn.ZeroPad3d)


def constant_pad_types() -> tuple[type, ...]:
    import torch

    return (torch.nn.ConstantPad1d, torch.nn.ConstantPad2d, torch.nn.ConstantPad3d)


def _tuple(value, rank: int) -> tuple[int, ...]:
    return tuple(value) if isinstance(value, (tuple, list)) else (value,) * rank


def module_pads(module: torch.nn.Module, rank: int) -> list[int]:
    """A conv or pool module's own padding as ONNX pads [begins..., ends...]."""
    padding = getattr(module, "padding", 0)
    if padding == "valid":
        return [0] * (2 * rank)
    if padding == "same":
        dilation, kernel = _tuple(module.dilation, rank), _tuple(module.kernel_size, rank)
        totals = [d * (k - 1) for d, k in zip(dilation, kernel)]
        return [t // 2 for t in totals] + [t - t // 2 for t in totals]
    pads = _tuple(padding, rank)
    return list(pads) + list(pads)


def pad_module_pads(module: torch.nn.Module, rank: int) -> list[int]:
    """A ZeroPad/ConstantPad/ReflectionPad/... module's padding as ONNX pads over the last `rank` axes.

    PyTorch orders padding last axis first: (left, right, top, bottom, ...)."""
    padding = _tuple(module.padding, 2 * rank)
    pairs = [padding[2 * i: 2 * i + 2] for i in range(rank)][::-1]  # first spatial axis first
    return [p[0] for p in pairs] + [p[1] for p in pairs]


def tf_same_pads(input_size: list[int], kernel: list[int], stride: list[int], dilation: list[int]) -> list[int]:
    """Where TF 'SAME' puts the padding: the extra row/column at the end (bottom/right)."""
    totals = []
    for size, k, s, d in zip(input_size, kernel, stride, dilation):
        effective = d * (k - 1) + 1
        out = -(-size // s)
        totals.append(max((out - 1) * s + effective - size, 0))
    return [t // 2 for t in totals] + [t - t // 2 for t in totals]


def is_symmetric(pads: list[int]) -> bool:
    half = len(pads) // 2
    return pads[:half] == pads[half:]
