"""An example model defined in a plain .py file next to its config (not in the pipeline package).

A residual block with ZeroPad2d before a stride-2 conv (asymmetric padding), a
ReflectionPad2d and max-pooling with ceil_mode, all with calibrated BatchNorm.
"""
from __future__ import annotations

import torch
from torch import nn

from pipeline.zoo.calibrate import calibrate_batchnorm


class ResidualBlock(nn.Module):
    def __init__(self, channels: int) -> None:
        super().__init__()
        self.pad = nn.ReflectionPad2d(1)
        self.conv1 = nn.Conv2d(channels, channels, 3, bias=False)
        self.bn1 = nn.BatchNorm2d(channels)
        self.conv2 = nn.Conv2d(channels, channels, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = torch.relu(self.bn1(self.conv1(self.pad(x))))
        return torch.relu(x + self.bn2(self.conv2(y)))


class ResidualNet(nn.Module):
    def __init__(self, channels: int = 16) -> None:
        super().__init__()
        self.down_pad = nn.ZeroPad2d((0, 1, 0, 1))  # TF-style asymmetric padding, then a stride-2 conv
        self.down = nn.Conv2d(3, channels, 3, stride=2)
        self.block = ResidualBlock(channels)
        self.pool = nn.MaxPool2d(3, stride=2, ceil_mode=True)
        self.head = nn.Linear(channels, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.pool(self.block(self.down(self.down_pad(x))))
        return self.head(y.mean(dim=(2, 3)))


def build(channels: int = 16) -> ResidualNet:
    torch.manual_seed(1)
    return calibrate_batchnorm(ResidualNet(channels), torch.rand(8, 3, 40, 40) - 0.5, seed=1)
