"""Two small models whose LayerNorm onnx2tf 1.x converts wrongly or not at all (issue 12).

The layout bug shows when channels equal the downsampled height and width (C = H/2 = W/2): onnx2tf
then cannot tell the layouts of the permuted tensor apart by shape.

- `channels_last`: ConvNeXt-style LayerNorm(C) applied through permute(0,2,3,1) ... permute(0,3,1,2);
  onnx2tf's layout transposes around it put the normalised axis in the wrong place.
- `chw`: nn.LayerNorm([C, H, W]); onnx2tf's LayerNormalization cannot build it.
Both: Conv -> GroupNorm (optional) -> SiLU -> stride-2 Conv -> LayerNorm -> nearest upsampling -> Conv.
"""
from __future__ import annotations

import torch
from torch import nn


class ChannelsLastLayerNorm(nn.Module):
    def __init__(self, channels: int) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)


class LayerNormNet(nn.Module):
    def __init__(self, in_channels: int, channels: int, size: int, kind: str, groups: int, blocks: int = 1) -> None:
        super().__init__()
        self.stem = nn.Conv2d(in_channels, channels, 3, padding=1)
        # groups=0 leaves GroupNorm out. With it, onnx2tf's float32 GroupNorm is ~20x less accurate than
        # PyTorch's on the constant edge-case input: within the per-sample noise floor, not a failure.
        self.gn = nn.GroupNorm(groups, channels) if groups else nn.Identity()
        self.act = nn.SiLU()
        self.down = nn.Conv2d(channels, channels, 3, stride=2, padding=1)
        half = (size + 1) // 2
        self.ln = ChannelsLastLayerNorm(channels) if kind == "channels_last" else nn.LayerNorm([channels, half, half])
        if blocks > 1:  # ConvNeXt-like repetition: the same converter bug once per block
            repeated = [ChannelsLastLayerNorm(channels) if kind == "channels_last" else nn.LayerNorm([channels, half, half])
                        for _ in range(blocks)]
            self.ln = nn.Sequential(*[m for norm in repeated for m in (norm, nn.Conv2d(channels, channels, 1))][:-1])
        self.up = nn.Upsample(scale_factor=2, mode="nearest")
        self.head = nn.Conv2d(channels, in_channels, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.up(self.ln(self.down(self.act(self.gn(self.stem(x)))))))


def channels_last(in_channels: int = 3, channels: int = 24, size: int = 32, groups: int = 4, seed: int = 0,
                  blocks: int = 1) -> nn.Module:
    torch.manual_seed(seed)
    return LayerNormNet(in_channels, channels, size, "channels_last", groups, blocks).eval()


def chw(in_channels: int = 3, channels: int = 24, size: int = 32, groups: int = 4, seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return LayerNormNet(in_channels, channels, size, "chw", groups).eval()


class TinyEpsNet(nn.Module):
    """Patch embedding -> LayerNorm(eps) -> Linear -> GELU -> LayerNorm(eps) -> token mean -> head (issue 25).

    HF's BEiT, DeiT and ConvNeXt default to layer_norm_eps=1e-12, which float16 stores as 0. The patch
    embedding has no bias, as HF's zero-initialised ones: an all-zeros image then gives all-zero tokens,
    whose variance is 0, so the float16 file computes Rsqrt(0 + 0) = Inf and 0 * Inf = NaN.
    """

    def __init__(self, in_channels: int, channels: int, patch: int, num_labels: int, eps: float,
                 activation: str = "gelu") -> None:
        super().__init__()
        self.embed = nn.Conv2d(in_channels, channels, patch, stride=patch, bias=False)
        self.norm1 = nn.LayerNorm(channels, eps=eps)
        self.mlp = nn.Sequential(nn.Linear(channels, channels), {"gelu": nn.GELU, "relu": nn.ReLU}[activation]())
        self.norm2 = nn.LayerNorm(channels, eps=eps)
        self.head = nn.Linear(channels, num_labels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        tokens = self.embed(x).flatten(2).transpose(1, 2)
        tokens = self.norm2(self.mlp(self.norm1(tokens)))
        return self.head(tokens.mean(dim=1))


def tiny_eps(in_channels: int = 3, channels: int = 32, patch: int = 8, num_labels: int = 10, eps: float = 1e-12,
             seed: int = 0, activation: str = "gelu") -> nn.Module:
    """`activation: relu` for onnx2tf 2.x's SavedModel route, which has no GELU."""
    torch.manual_seed(seed)
    return TinyEpsNet(in_channels, channels, patch, num_labels, eps, activation).eval()
