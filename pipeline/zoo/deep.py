"""A deep residual Conv-ReLU-BatchNorm network: where float32 rounding grows with depth.

Its BatchNorm statistics are calibrated on data, so activations stay at unit scale through
every block, as in a trained network; the residual path keeps the input reaching the output
(a deep plain stack of random blocks forgets it). Each BatchNorm follows a ReLU, so exporters
keep it as a BatchNormalization node (one right after a Conv is folded into its weights).
"""
from __future__ import annotations

import torch
from torch import nn

from pipeline.zoo.calibrate import calibrate_batchnorm


class DeepConvBN(nn.Module):
    def __init__(self, blocks: int, channels: int) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, channels, 3, padding=1)
        self.blocks = nn.ModuleList([
            nn.Sequential(nn.Conv2d(channels, channels, 3, padding=1, bias=False), nn.ReLU(), nn.BatchNorm2d(channels))
            for _ in range(blocks)
        ])
        self.head = nn.Conv2d(channels, 8, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x)
        for block in self.blocks:
            x = x + block(x)
        return self.head(x)


def build(blocks: int = 32, channels: int = 16, size: int = 32, seed: int = 0) -> DeepConvBN:
    torch.manual_seed(seed)
    model = DeepConvBN(blocks, channels)
    return calibrate_batchnorm(model, torch.rand(8, 3, size, size) * 2 - 1, seed=seed)


class PlainConvBN(nn.Module):
    """The original report's ~70-layer case: a plain stack of Conv-BatchNorm-ReLU blocks (no skips), each
    BatchNorm right after its conv, so the exporter folds it into the conv's weights."""

    def __init__(self, blocks: int, channels: int) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, channels, 3, padding=1)
        self.body = nn.Sequential(*[layer for _ in range(blocks) for layer in
                                    (nn.Conv2d(channels, channels, 3, padding=1), nn.BatchNorm2d(channels), nn.ReLU())])
        self.head = nn.Conv2d(channels, 8, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.body(self.stem(x)))


def plain(blocks: int = 34, channels: int = 16, size: int = 32, seed: int = 0) -> PlainConvBN:
    torch.manual_seed(seed)
    model = PlainConvBN(blocks, channels)
    with torch.no_grad():  # near-identity convs, as training leaves a deep plain stack: the input still reaches the output
        for conv in model.body:
            if isinstance(conv, nn.Conv2d):
                nn.init.dirac_(conv.weight)
                conv.weight.add_(torch.randn_like(conv.weight) * 0.1)
    return calibrate_batchnorm(model, torch.rand(8, 3, size, size) * 2 - 1, seed=seed)
