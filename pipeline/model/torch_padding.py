"""The padding PyTorch really applies at each conv and pool call, measured in the forward pass.

A module's `padding` attribute is not always what it applies. transformers' BiT pads in forward,
TF-style, with a dynamic 'SAME' pad module (DynamicPad2d) in front of a conv whose own padding
is 0; other models call F.pad in a parent's forward. Exporters fold such a zero pad into the
Conv's `pads`. So the pass watches the torch functions themselves (a TorchFunctionMode): every
constant zero pad (F.pad, ZeroPad2d, ConstantPad2d(0)) is remembered on the tensor it returns,
and every conv and pool call is recorded, for the innermost module running it, as its own
padding argument plus the pads its very input tensor received just before.

A mode sees every torch call; what that costs is lost in the noise: on the zoo's ResNet-50 (quarter
width, 64 px) the fastest of 40 passes took 0.014 s with it and 0.018 s without (a loaded machine:
no difference to measure).
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import torch
from torch.overrides import TorchFunctionMode

# conv1d..3d, max_pool1d..3d (F.max_pool2d reaches a mode under either name), avg_pool1d..3d
CALLS = re.compile(r"^_?(conv|max_pool|avg_pool)([123])d(_with_indices)?$")
PADDING_ARG = {"conv": 4, "max_pool": 3, "avg_pool": 3}  # its position: conv(input, weight, bias, stride, padding, ...)
PADS = ("pad", "constant_pad_nd")


@dataclass(frozen=True)
class AppliedPadding:
    """What one module's conv or pool call padded, as ONNX pads [begins..., ends...] over its spatial axes."""

    own: tuple[int, ...] | None  # the call's padding argument; None when it could not be read
    before: tuple[int, ...] | None  # constant zero pads its input tensor received just before; None: another pad
    sizes: tuple[int, ...] = ()  # the spatial sizes of the tensor the call received (after those pads)
    unknown: str = ""  # why none of it can be trusted (empty: it can)
    is_conv: bool = True

    @property
    def total(self) -> list[int] | None:
        """Own plus before: the pads of the node an exporter makes when it folds the pad in; None if unknown,
        and for a pool after a zero pad (a pool's pads are left out of its window, a zero pad is not)."""
        if self.unknown or self.own is None or self.before is None or (not self.is_conv and any(self.before)):
            return None
        return [a + b for a, b in zip(self.own, self.before)]

    @property
    def unpadded_sizes(self) -> tuple[int, ...] | None:
        """The sizes before the pads done just before the call, when those are known."""
        if self.before is None:
            return None
        rank = len(self.sizes)
        return tuple(s - self.before[i] - self.before[i + rank] for i, s in enumerate(self.sizes))


class PaddingWatch(TorchFunctionMode):
    """Records AppliedPadding per module path while a forward pass runs; `stack` holds the running modules."""

    def __init__(self, stack: list[str]) -> None:
        super().__init__()
        self.stack = stack
        self.applied: dict[str, AppliedPadding] = {}
        self._padded: dict[int, tuple[torch.Tensor, list[int] | None]] = {}  # the tensor is kept so its id stays its own

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        name = getattr(func, "__name__", "")
        if name in PADS and isinstance(out, torch.Tensor):
            self._pad(name, args, kwargs, out)
        elif self.stack and (match := CALLS.match(name)):
            self._call(match.group(1), int(match.group(2)), args, kwargs)
        return out

    def _pad(self, name: str, args: tuple, kwargs: dict, out: torch.Tensor) -> None:
        source, pad = _arg(args, kwargs, 0, "input"), list(_arg(args, kwargs, 1, "pad"))
        if name == "constant_pad_nd":  # (input, pad, value)
            mode, value = "constant", _arg(args, kwargs, 2, "value", 0)
        else:  # F.pad(input, pad, mode, value)
            mode, value = _arg(args, kwargs, 2, "mode", "constant"), _arg(args, kwargs, 3, "value", None)
        zero = mode == "constant" and not value and all(p >= 0 for p in pad)
        _, earlier = self._padded.get(id(source), (None, []))
        self._padded[id(out)] = (out, _add_torch_pads(earlier, pad) if zero and earlier is not None else None)

    def _call(self, kind: str, rank: int, args: tuple, kwargs: dict) -> None:
        source = _arg(args, kwargs, 0, "input")
        _, torch_pads = self._padded.get(id(source), (None, []))
        own = _own_pads(kind, rank, args, kwargs)
        seen = AppliedPadding(own, _onnx_pads(torch_pads, rank), tuple(source.shape[-rank:]),
                              "" if own is not None else "its padding argument could not be read", kind == "conv")
        path = self.stack[-1]
        earlier = self.applied.setdefault(path, seen)
        if earlier != seen and not earlier.unknown:
            self.applied[path] = AppliedPadding(None, None, (), "it runs more than one conv or pool call, with "
                                                "different padding or input sizes")


def _arg(args: tuple, kwargs: dict, index: int, name: str, default: Any = 0) -> Any:
    return args[index] if len(args) > index else kwargs.get(name, default)


def _own_pads(kind: str, rank: int, args: tuple, kwargs: dict) -> tuple[int, ...] | None:
    padding = _arg(args, kwargs, PADDING_ARG[kind], "padding", 0)
    if padding == "valid":
        return (0,) * (2 * rank)
    if padding == "same":  # conv only; PyTorch puts the odd pixel at the end
        kernel = _arg(args, kwargs, 1, "weight").shape[2:]
        dilation = _per_axis(_arg(args, kwargs, 5, "dilation", 1), rank)
        totals = [d * (k - 1) for d, k in zip(dilation, kernel)]
        return tuple(t // 2 for t in totals) + tuple(t - t // 2 for t in totals)
    if isinstance(padding, str):
        return None
    per_axis = _per_axis(padding, rank)
    return tuple(per_axis) + tuple(per_axis)


def _per_axis(value, rank: int) -> list[int]:
    return [int(v) for v in value] if isinstance(value, (tuple, list, torch.Size)) else [int(value)] * rank


def _add_torch_pads(a: list[int], b: list[int]) -> list[int]:
    longer, shorter = (a, b) if len(a) >= len(b) else (b, a)
    return [x + (shorter[i] if i < len(shorter) else 0) for i, x in enumerate(longer)]


def _onnx_pads(torch_pads: list[int] | None, rank: int) -> tuple[int, ...] | None:
    """F.pad's order (last axis first: left, right, top, bottom, ...) as ONNX pads over the last `rank` axes;
    None when the pad is not a constant zero one, or also pads an axis the call does not slide over."""
    if torch_pads is None or any(torch_pads[2 * rank:]):
        return None
    pairs = [torch_pads[2 * i: 2 * i + 2] or [0, 0] for i in range(rank)][::-1]  # first spatial axis first
    pairs = [p + [0] * (2 - len(p)) for p in pairs]
    return tuple(p[0] for p in pairs) + tuple(p[1] for p in pairs)
