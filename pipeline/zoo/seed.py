"""seed_ym: the model from the original bug report.

Space-to-depth by strided slicing and concat, Conv2d(12->32, 3x3, stride 1, pad 1,
no bias), BatchNorm2d(32), LeakyReLU(0.1). Its BatchNorm statistics follow the
report (small variances), so a wrong epsilon changes the output visibly.
"""
from __future__ import annotations

import torch
from torch import nn


class SpaceToDepth(nn.Module):
    """(N, C, H, W) -> (N, 4C, H/2, W/2) by strided slicing, as in YOLOv5's Focus layer."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([x[..., ::2, ::2], x[..., 1::2, ::2], x[..., ::2, 1::2], x[..., 1::2, 1::2]], dim=1)


class SeedYM(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.focus = SpaceToDepth()
        self.conv = nn.Conv2d(12, 32, kernel_size=3, stride=1, padding=1, bias=False)
        self.bn = nn.BatchNorm2d(32)
        self.act = nn.LeakyReLU(0.1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.bn(self.conv(self.focus(x))))


def build(seed: int = 0) -> SeedYM:
    """SeedYM with the report's statistics: gamma~U(0,0.1), beta~U(0,1), mean~U(0,1), var~U(0,0.1)."""
    torch.manual_seed(seed)
    model = SeedYM()
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for tensor, high in ((model.bn.weight, 0.1), (model.bn.bias, 1.0), (model.bn.running_mean, 1.0), (model.bn.running_var, 0.1)):
            tensor.uniform_(0.0, high, generator=generator)
    return model.eval()
