"""A small 4-conv CNN whose int8 is healthy, and the same network with one outlier channel.

`outlier` gives one channel of the second conv's output `scale` times the range of the others
and scales the third conv's weights on that channel back by 1/scale: ReLU commutes with a positive
scale, so the float model computes the same function. Full-integer int8 quantizes each activation
tensor with one scale, so that channel's range leaves the other channels a few levels, or none:
the classic case for keeping a layer in float (pipeline/convert/int8_layers.py).

`calibration` writes the samples each config calibrates on, drawn from the input range, so a
config and a test share one reproducible file.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import nn

SHAPE = (1, 3, 16, 16)
OUTLIER_CHANNEL = 0


class SmallCNN(nn.Module):
    def __init__(self, channels: int = 8) -> None:
        super().__init__()
        # No biases: every output is input-dependent, so the SNR measures the signal, not a constant.
        self.conv1 = nn.Conv2d(3, channels, 3, padding=1, bias=False)
        self.conv2 = nn.Conv2d(channels, channels, 3, padding=1, bias=False)
        self.conv3 = nn.Conv2d(channels, channels, 3, padding=1, bias=False)
        self.head = nn.Conv2d(channels, 10, 1, bias=False)
        self.relu = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.relu(self.conv1(x))
        x = self.relu(self.conv2(x))
        x = self.relu(self.conv3(x))
        return self.head(x)  # (1, 10, H, W): scores per position


def healthy(seed: int = 0) -> SmallCNN:
    torch.manual_seed(seed)
    return SmallCNN().eval()


def outlier(scale: float = 300.0, seed: int = 0) -> SmallCNN:
    """The healthy network with conv2's output channel OUTLIER_CHANNEL `scale` times larger, and conv3
    reading it `scale` times smaller: the same float function, a hard one for per-tensor int8."""
    model = healthy(seed)
    with torch.no_grad():
        model.conv2.weight[OUTLIER_CHANNEL] *= scale
        model.conv3.weight[:, OUTLIER_CHANNEL] /= scale
    return model


def calibration(path: Path, samples: int = 64, low: float = -1.0, high: float = 1.0, seed: int = 1) -> Path:
    """`samples` inputs from the configs' input range [low, high), as quantize.int8.calibration takes them."""
    rng = np.random.default_rng(seed)
    np.savez(path, x=rng.uniform(low, high, (samples, *SHAPE)).astype(np.float32))
    return path


if __name__ == "__main__":  # python -m pipeline.zoo.int8_outlier: the configs' calibration file
    calibration(Path(__file__).resolve().parents[2] / "configs" / "int8_calibration.npz")
