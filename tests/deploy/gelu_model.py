"""A model with exact GELU (nn.GELU()): exported by TorchScript at opset 17 it holds an Erf node,
which TFLite has only as a Select TF op (FlexErf)."""
import torch
from torch import nn


class ExactGelu(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3, padding=1)
        self.act = nn.GELU()
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(8, 10)

    def forward(self, x):
        return self.fc(self.pool(self.act(self.conv(x))).flatten(1))


def build():
    torch.manual_seed(0)
    return ExactGelu().eval()
