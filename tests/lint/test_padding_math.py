"""pipeline/lint/padding_math.py: PyTorch padding as ONNX pads, and where TF 'SAME' puts its padding."""
from __future__ import annotations

import pytest
import torch
from torch import nn

from pipeline.lint.padding_math import is_symmetric, module_pads, pad_module_pads, tf_same_pads


@pytest.mark.parametrize("module, rank, pads", [
    (nn.Conv2d(1, 1, 3, padding=1), 2, [1, 1, 1, 1]),
    (nn.Conv2d(1, 1, (3, 5), padding=(1, 2)), 2, [1, 2, 1, 2]),
    (nn.Conv2d(1, 1, 3), 2, [0, 0, 0, 0]),
    (nn.Conv2d(1, 1, 3, padding="valid"), 2, [0, 0, 0, 0]),
    (nn.Conv2d(1, 1, 3, padding="same"), 2, [1, 1, 1, 1]),
    (nn.Conv2d(1, 1, 4, padding="same"), 2, [1, 1, 2, 2]),  # PyTorch puts the odd pixel at the end
    (nn.Conv2d(1, 1, 3, padding="same", dilation=2), 2, [2, 2, 2, 2]),
    (nn.Conv2d(1, 1, (2, 3), padding="same", dilation=(1, 3)), 2, [0, 3, 1, 3]),
    (nn.Conv1d(1, 1, 5, padding=2), 1, [2, 2]),
    (nn.Conv3d(1, 1, 3, padding=(0, 1, 2)), 3, [0, 1, 2, 0, 1, 2]),
    (nn.MaxPool2d(3, 2, padding=1), 2, [1, 1, 1, 1]),
    (nn.AvgPool2d(2), 2, [0, 0, 0, 0]),
])
def test_module_pads(module, rank, pads):
    assert module_pads(module, rank) == pads


@pytest.mark.parametrize("module, rank, pads", [
    (nn.ZeroPad2d((1, 2, 3, 4)), 2, [3, 1, 4, 2]),  # (left, right, top, bottom) -> [top, left, bottom, right]
    (nn.ZeroPad2d((0, 1, 0, 1)), 2, [0, 0, 1, 1]),
    (nn.ZeroPad2d(2), 2, [2, 2, 2, 2]),
    (nn.ConstantPad1d((1, 3), 0.5), 1, [1, 3]),
    (nn.ReflectionPad2d((1, 2, 0, 1)), 2, [0, 1, 1, 2]),
    (nn.ReplicationPad3d((1, 2, 3, 4, 5, 6)), 3, [5, 3, 1, 6, 4, 2]),
])
def test_pad_module_pads_orders_the_first_spatial_axis_first(module, rank, pads):
    assert pad_module_pads(module, rank) == pads


def test_pad_module_pads_agree_with_what_pytorch_pads():
    x = torch.zeros(1, 1, 5, 7)
    module = nn.ZeroPad2d((1, 2, 3, 4))
    top, left, bottom, right = pad_module_pads(module, 2)
    assert module(x).shape[-2:] == (5 + top + bottom, 7 + left + right)
    assert (top, left, bottom, right) == (3, 1, 4, 2)


@pytest.mark.parametrize("size, kernel, stride, dilation, pads", [
    ([8, 8], [3, 3], [2, 2], [1, 1], [0, 0, 1, 1]),  # even input, stride 2: the extra row/column at the end
    ([9, 9], [3, 3], [2, 2], [1, 1], [1, 1, 1, 1]),  # odd input: symmetric, same as PyTorch padding=1
    ([8, 9], [3, 3], [2, 2], [1, 1], [0, 1, 1, 1]),
    ([8, 8], [3, 3], [1, 1], [1, 1], [1, 1, 1, 1]),
    ([8, 8], [4, 4], [1, 1], [1, 1], [1, 1, 2, 2]),
    ([8, 8], [3, 3], [1, 1], [2, 2], [2, 2, 2, 2]),
    ([8, 8], [1, 1], [2, 2], [1, 1], [0, 0, 0, 0]),
    ([7], [2], [3], [1], [0, 1]),
])
def test_tf_same_pads(size, kernel, stride, dilation, pads):
    assert tf_same_pads(size, kernel, stride, dilation) == pads


@pytest.mark.parametrize("pads, symmetric", [
    ([1, 1, 1, 1], True), ([0, 0, 0, 0], True), ([0, 0, 1, 1], False), ([1, 2, 1, 2], True), ([1, 2, 2, 1], False),
    ([2, 2], True), ([0, 1], False),
])
def test_is_symmetric(pads, symmetric):
    assert is_symmetric(pads) is symmetric


@pytest.mark.filterwarnings("ignore:Using padding='same' with even kernel")  # PyTorch's performance note
@pytest.mark.parametrize("kernel, dilation", [(4, 1), ((2, 3), (1, 3)), (3, 2)])
def test_same_pads_reproduce_pytorchs_same_convolution(kernel, dilation):
    torch.manual_seed(0)
    conv = nn.Conv2d(1, 1, kernel, padding="same", dilation=dilation, bias=False)
    x = torch.rand(1, 1, 7, 8)
    top, left, bottom, right = module_pads(conv, 2)
    explicit = nn.functional.conv2d(nn.functional.pad(x, (left, right, top, bottom)), conv.weight, dilation=dilation)
    torch.testing.assert_close(explicit, conv(x))
