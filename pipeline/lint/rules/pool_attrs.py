"""Pooling and conv attributes that change numbers without changing shapes:
ceil_mode, count_include_pad (PyTorch defaults to True, ONNX to 0), dilations, strides."""
from __future__ import annotations

from typing import Iterator

from pipeline.lint import Finding, rule
from pipeline.lint.context import LintContext
from pipeline.lint.rules.pads import MODULE_CLASSES

NAME = "pool_attrs"


def _as_list(value, rank: int) -> list[int]:
    return list(value) if isinstance(value, (tuple, list)) else [value] * rank


def _expected(module, op_type: str, rank: int) -> dict[str, object]:
    expected: dict[str, object] = {"strides": _as_list(module.stride, rank)}
    if op_type in ("MaxPool", "AveragePool"):
        expected["ceil_mode"] = int(bool(module.ceil_mode))
    if op_type == "AveragePool":
        expected["count_include_pad"] = int(bool(module.count_include_pad))
    if op_type in ("Conv", "ConvTranspose", "MaxPool"):
        expected["dilations"] = _as_list(module.dilation, rank)
    return expected


ONNX_DEFAULTS = {"ceil_mode": 0, "count_include_pad": 0}


def _adaptive(module) -> bool:
    """An adaptive pool: its kernel and stride follow from the input's size at run time."""
    from torch import nn

    return isinstance(module, (nn.AdaptiveAvgPool1d, nn.AdaptiveAvgPool2d, nn.AdaptiveAvgPool3d,
                               nn.AdaptiveMaxPool1d, nn.AdaptiveMaxPool2d, nn.AdaptiveMaxPool3d))


@rule(NAME)
def check(ctx: LintContext) -> Iterator[Finding]:
    if not ctx.has_modules:
        return
    for node in ctx.nodes:
        if node.op_type not in MODULE_CLASSES:
            continue
        where = ctx.attribute(node, want=MODULE_CLASSES[node.op_type])
        if where.module is None:
            continue  # the pads rule already says this node is not attributed
        module = ctx.modules[where.module]
        if _adaptive(module):  # AdaptiveAvgPool2d (matched as an AvgPool2d look-alike): no stride of its own
            yield Finding(NAME, "info", node.name, node.op_type, where.module, None, None,
                          f"strides and kernel not checked against {where.module}: {type(module).__name__} sets them from "
                          "the input's size at run time; the audit's numbers check them", where.describe())
            continue
        attrs = ctx.attrs(node)
        rank = len(attrs.get("kernel_shape") or ctx.constant(node.input[1]).shape[2:])
        for key, want in _expected(module, node.op_type, rank).items():
            have = attrs.get(key, ONNX_DEFAULTS.get(key, [1] * rank))
            if have != want:
                yield Finding(NAME, "error", node.name, node.op_type, where.module, str(want), str(have),
                              f"{key} is {have} but {where.module} uses {want}: re-export, or set {key}={want}", where.describe())
