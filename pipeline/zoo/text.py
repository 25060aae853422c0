"""A small text encoder for dynamic batch and sequence: token and position embeddings (positions
looked up for arange(sequence): slicing a position table to the input's length makes onnx2tf 1.29 write a
Keras file that cannot be loaded back, tf.tensor_scatter_nd_update failing on the dynamic length), one single-head self-attention block and a feed-forward block, each with a
residual and LayerNorm, mean pooling over the sequence and a classifier. Single-head so that no reshape
into heads depends on the batch or the sequence (onnx2tf 1.29 converts it with both dynamic).
"""
from __future__ import annotations

import math

import torch
from torch import nn


class TextEncoder(nn.Module):
    def __init__(self, vocab: int = 256, width: int = 64, positions: int = 128, labels: int = 4) -> None:
        super().__init__()
        self.tokens = nn.Embedding(vocab, width)
        self.positions = nn.Embedding(positions, width)
        self.q, self.k, self.v, self.o = (nn.Linear(width, width) for _ in range(4))
        self.norm1, self.norm2 = nn.LayerNorm(width), nn.LayerNorm(width)
        self.ff = nn.Sequential(nn.Linear(width, 4 * width), nn.GELU(approximate="tanh"), nn.Linear(4 * width, width))
        self.head = nn.Linear(width, labels)

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        x = self.tokens(input_ids) + self.positions(torch.arange(input_ids.shape[1], device=input_ids.device))
        scores = self.q(x) @ self.k(x).transpose(1, 2) / math.sqrt(x.shape[-1])
        x = self.norm1(x + self.o(torch.softmax(scores, dim=-1) @ self.v(x)))
        x = self.norm2(x + self.ff(x))
        return self.head(x.mean(dim=1))


def build(seed: int = 0) -> TextEncoder:
    torch.manual_seed(seed)
    return TextEncoder().eval()
