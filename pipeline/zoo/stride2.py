"""A small stride-2 conv net with non-default BatchNorm epsilon.

Stride 2 with symmetric padding is where TF 'SAME' would differ from PyTorch;
eps=1e-3 and 1e-4 check that an intentionally non-default epsilon survives.
"""
from __future__ import annotations

import torch
from torch import nn

from pipeline.zoo.calibrate import calibrate_batchnorm


class Stride2Net(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 16, 3, stride=2, padding=1, bias=False), nn.BatchNorm2d(16, eps=1e-3), nn.ReLU())
        self.down = nn.Sequential(nn.Conv2d(16, 32, 3, stride=2, padding=1), nn.BatchNorm2d(32, eps=1e-4), nn.SiLU())
        self.pool = nn.AvgPool2d(2, ceil_mode=True, count_include_pad=False)
        self.head = nn.Conv2d(32, 8, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.pool(self.down(self.stem(x))))


def build(height: int = 48, width: int = 48, seed: int = 0) -> Stride2Net:
    torch.manual_seed(seed)
    model = Stride2Net()
    return calibrate_batchnorm(model, torch.rand(8, 3, height, width) - 0.5, seed=seed)
