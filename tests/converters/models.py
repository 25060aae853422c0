"""Tiny PyTorch models the converter tests name in their configs (`tests.converters.models:<factory>`)."""
from __future__ import annotations

import torch
from torch import nn


class TwoHeads(nn.Module):
    """A conv feature map and the logits pooled from it: two outputs of different ranks and layouts."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3, padding=1)
        self.head = nn.Linear(8, 4)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        features = torch.relu(self.conv(x))
        return self.head(features.mean(dim=(2, 3))), features


def two_heads(seed: int = 0) -> TwoHeads:
    torch.manual_seed(seed)
    return TwoHeads().eval()
