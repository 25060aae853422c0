"""pipeline/runners/intermediates.py: PyTorch captures survive in-place ops that run after the hook."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from pipeline.inputs import TensorSpec
from pipeline.runners.intermediates import TorchLayersRunner


class InPlace(nn.Module):
    """Every kind of in-place op that can overwrite a module's output after its hook ran."""

    def __init__(self, activation: nn.Module) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1)
        self.act = activation
        self.skip = nn.Conv2d(3, 4, 1)

    def forward(self, x):
        y = self.act(self.conv(x))  # the conv's output tensor is overwritten by the in-place activation
        z = self.skip(x)
        z += y  # the skip conv's output is overwritten by the residual add
        return z


@pytest.mark.parametrize("activation", [nn.ReLU(inplace=True), nn.ReLU6(inplace=True), nn.SiLU(inplace=True)],
                         ids=["relu", "relu6", "silu"])
@pytest.mark.parametrize("float64", [False, True], ids=["fp32", "oracle"])
def test_captured_outputs_are_the_modules_own_not_what_in_place_ops_made_of_them(activation, float64):
    torch.manual_seed(0)
    model = InPlace(activation).eval()
    if float64:
        model = model.double()
    x = np.random.default_rng(0).uniform(-1, 1, (1, 3, 8, 8)).astype(np.float32)
    mapping = {"conv": "t_conv", "act": "t_act", "skip": "t_skip"}
    with TorchLayersRunner(model, [TensorSpec("x", (1, 3, 8, 8), "float32")], mapping, float64=float64) as runner:
        captured = runner.infer({"x": x})
    xt = torch.from_numpy(x.astype(np.float64) if float64 else x)
    with torch.no_grad():
        conv, skip = model.conv(xt), model.skip(xt)
        act = type(activation)()(conv.clone())
    np.testing.assert_allclose(captured["t_conv"], conv.numpy(), rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(captured["t_act"], act.numpy(), rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(captured["t_skip"], skip.numpy(), rtol=1e-6, atol=1e-6)
    assert (conv.numpy() < 0).any()  # the test means something: the activation would have changed it
