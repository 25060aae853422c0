"""Tiny PyTorch models for the diagnose tests (factories named in the tests' YAML configs),
with realistic BatchNorm statistics so a wrong epsilon or padding is visible."""
from __future__ import annotations

import torch
from torch import nn

from pipeline.zoo.calibrate import calibrate_batchnorm
from pipeline.zoo.seed import build as focus_block  # noqa: F401  (the report's block: Focus, Conv, BN, LeakyReLU(0.1))


def _calibrated(model: nn.Module, shape: tuple[int, ...]) -> nn.Module:
    """Running statistics that match the activations (a cumulative average over the calibration passes,
    so the initial mean 0 / variance 1 does not linger), then perturbed as calibrate_batchnorm does."""
    torch.manual_seed(0)
    norms = [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
    for norm in norms:
        norm.momentum = None
    model = calibrate_batchnorm(model, torch.rand(8, *shape[1:]) - 0.5)
    for norm in norms:
        norm.momentum = 0.1
    return model


def stride2() -> nn.Module:
    """Two stride-2 convs padded 1 on every side: where TF 'same' pads bottom/right only."""
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Conv2d(3, 16, 3, stride=2, padding=1, bias=False), nn.BatchNorm2d(16), nn.ReLU(),
        nn.Conv2d(16, 8, 3, stride=2, padding=1), nn.BatchNorm2d(8), nn.ReLU(),
    )
    return _calibrated(model, (1, 3, 32, 32))


def deep(blocks: int = 32) -> nn.Module:
    """`blocks` Conv(3x3, no bias) + BatchNorm(eps 1e-5) + ReLU blocks."""
    torch.manual_seed(0)
    layers: list[nn.Module] = []
    for i in range(blocks):
        layers += [nn.Conv2d(3 if i == 0 else 8, 8, 3, padding=1, bias=False), nn.BatchNorm2d(8), nn.ReLU()]
    return _calibrated(nn.Sequential(*layers), (1, 3, 16, 16))


def flatten_head() -> nn.Module:
    """Conv, ReLU, Flatten (NCHW order), Linear: a naive NHWC port permutes the features."""
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 8 * 8, 10)).eval()


def mixed() -> nn.Module:
    """LeakyReLU at PyTorch's default slope, an average pool that counts its padding, nearest upsampling,
    LayerNorm over features."""
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1), nn.LeakyReLU(), nn.AvgPool2d(3, stride=2, padding=1),
        nn.Upsample(scale_factor=2, mode="nearest"), nn.Conv2d(8, 4, 1), nn.Flatten(), nn.Linear(4 * 16 * 16, 6),
        nn.LayerNorm(6),
    ).eval()


def twin_bn() -> nn.Module:
    """Two BatchNorms with identical (fresh) weights: mapping by weights is ambiguous, order decides."""
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.BatchNorm2d(4), nn.Conv2d(4, 4, 3, padding=1), nn.BatchNorm2d(4)).eval()


def mobile() -> nn.Module:
    """A MobileNet-style stem: stride-2 conv, depthwise conv, pointwise conv, each with BatchNorm; ReLU6."""
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Conv2d(3, 8, 3, stride=2, padding=1, bias=False), nn.BatchNorm2d(8), nn.ReLU6(),
        nn.Conv2d(8, 8, 3, padding=1, groups=8, bias=False), nn.BatchNorm2d(8), nn.ReLU6(),
        nn.Conv2d(8, 16, 1, bias=False), nn.BatchNorm2d(16),
    )
    return _calibrated(model, (1, 3, 32, 32))


def gelu_group() -> nn.Module:
    """GroupNorm, tanh-approximated GELU, max pooling and ReLU6."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.GroupNorm(2, 8), nn.GELU(approximate="tanh"),
                          nn.MaxPool2d(2), nn.Conv2d(8, 4, 1), nn.ReLU6())
    with torch.no_grad():
        model[1].weight.uniform_(0.5, 1.5)
        model[1].bias.uniform_(-0.5, 0.5)
    return model.eval()
