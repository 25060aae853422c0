"""A small fully convolutional segmenter: two stride-2 Conv+BN+ReLU stages, a 1x1 class head, and
bilinear upsampling back to the input's height and width.

`upsample: scale` (the default) upsamples by 4, the inverse of the two stride-2 stages: the output has
the input's size for heights and widths that are multiples of 4 (`dims: {multiple_of: 4}`), and the
graph's Resize has constant scales, which onnx2tf 1.29 converts with dynamic height and width.
`upsample: size` reads the size from the input (`interpolate(size=x.shape[-2:])`), right for any size,
but its Resize takes sizes computed by Shape ops, which onnx2tf 1.29 cannot convert with dynamic height
and width (the conversion error names the Shape node).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from pipeline.zoo.calibrate import calibrate_batchnorm


def _stage(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, stride=2, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU())


class FCN(nn.Module):
    def __init__(self, classes: int = 4, upsample: str = "scale") -> None:
        super().__init__()
        self.upsample = upsample
        self.down1 = _stage(3, 8)
        self.down2 = _stage(8, 16)
        self.head = nn.Conv2d(16, classes, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        logits = self.head(self.down2(self.down1(x)))
        if self.upsample == "size":
            return F.interpolate(logits, size=x.shape[-2:], mode="bilinear", align_corners=False)
        return F.interpolate(logits, scale_factor=4.0, mode="bilinear", align_corners=False)


def build(upsample: str = "scale", seed: int = 0) -> FCN:
    torch.manual_seed(seed)
    return calibrate_batchnorm(FCN(upsample=upsample), torch.rand(8, 3, 32, 32) - 0.5, seed=seed)


class BatchOneFlatten(nn.Module):
    """A classifier whose flatten bakes batch 1 into a reshape (`view(1, -1)` written as a literal):
    it runs at batch 1 only, so it cannot be exported with a dynamic batch."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1)
        self.fc = nn.Linear(4 * 8 * 8, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.relu(self.conv(x)).reshape(1, 4 * 8 * 8))


def build_batch_one(seed: int = 0) -> BatchOneFlatten:
    torch.manual_seed(seed)
    return BatchOneFlatten().eval()
