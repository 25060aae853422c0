"""pipeline/model/torch_padding.py: the padding each conv and pool call really applies, measured in a forward pass."""
from __future__ import annotations

import pytest
import torch
from torch import nn

from pipeline.model.torch_trace import trace_modules

X = torch.rand(1, 3, 8, 8, generator=torch.Generator().manual_seed(0))


class PadThen(nn.Module):
    """`pad` (a callable on the input), then `layer`."""

    def __init__(self, pad, layer: nn.Module) -> None:
        super().__init__()
        self.pad, self.layer = pad, layer

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layer(self.pad(x))


def applied(model: nn.Module):
    return trace_modules(model.eval(), (X,)).padding["layer"]


def test_a_conv_without_pads_before_it_applies_its_own_padding():
    seen = applied(PadThen(nn.Identity(), nn.Conv2d(3, 4, 3, stride=2, padding=(1, 2))))
    assert (seen.own, seen.before, seen.sizes, seen.total) == ((1, 2, 1, 2), (0, 0, 0, 0), (8, 8), [1, 2, 1, 2])


@pytest.mark.parametrize("pad", [nn.ZeroPad2d((0, 1, 2, 3)), nn.ConstantPad2d((0, 1, 2, 3), 0.0),
                                 lambda x: nn.functional.pad(x, (0, 1, 2, 3))])
def test_a_zero_pad_just_before_a_conv_adds_to_its_pads(pad):
    seen = applied(PadThen(pad, nn.Conv2d(3, 4, 3, padding="same")))
    # F.pad's (left, right, top, bottom) as ONNX [top, left, bottom, right]; 'same' with kernel 3 is 1 all round
    assert (seen.own, seen.before, seen.sizes, seen.total) == ((1, 1, 1, 1), (2, 0, 3, 1), (13, 9), [3, 1, 4, 2])
    assert seen.unpadded_sizes == (8, 8)


def test_two_pads_in_a_row_add_up():
    seen = applied(PadThen(nn.Sequential(nn.ZeroPad2d(1), nn.ZeroPad2d((0, 1, 0, 1))), nn.Conv2d(3, 4, 3)))
    assert seen.before == (1, 1, 2, 2) and seen.total == [1, 1, 2, 2]


@pytest.mark.parametrize("pad, layer", [
    (nn.ReflectionPad2d(1), nn.Conv2d(3, 4, 3)),  # not zeros: no conv's pads hold it
    (nn.ConstantPad2d(1, 0.5), nn.Conv2d(3, 4, 3)),
    (lambda x: nn.functional.pad(x, (1, 1, 1, 1, 1, 1)), nn.Conv2d(5, 4, 3)),  # pads the channels too
    (nn.ZeroPad2d(1), nn.MaxPool2d(3)),  # a pool's pads are left out of its window; zeros are not
])
def test_a_pad_a_nodes_pads_cannot_hold_has_no_total(pad, layer):
    seen = applied(PadThen(pad, layer))
    assert seen.total is None and not seen.unknown and seen.own == (0, 0, 0, 0)


def test_an_op_between_the_pad_and_the_conv_ends_the_pad():
    seen = applied(PadThen(lambda x: nn.functional.pad(x, (0, 1, 0, 1)) * 2, nn.Conv2d(3, 4, 3)))
    assert seen.before == (0, 0, 0, 0) and seen.sizes == (9, 9)


def test_pools_are_measured_too():
    seen = applied(PadThen(nn.Identity(), nn.AvgPool2d(3, 2, padding=1)))
    assert seen.own == (1, 1, 1, 1) and seen.total == [1, 1, 1, 1]


class RefusesTheWatch(nn.Module):
    """Stands for a model whose forward cannot run under a TorchFunctionMode."""

    def __init__(self) -> None:
        super().__init__()
        self.layer = nn.Conv2d(3, 4, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if torch.overrides._get_current_function_mode() is not None:
            raise RuntimeError("no function modes here")
        return self.layer(x)


def test_a_forward_that_fails_under_the_watch_is_traced_without_it_and_says_why():
    trace = trace_modules(RefusesTheWatch().eval(), (X,))
    assert trace.padding == {} and trace.input_shapes == {"layer": (1, 3, 8, 8)}
    assert trace.padding_unmeasured == "the forward pass failed under the padding watch: RuntimeError: no function modes here"
