"""pipeline/audit/noise.py: the floor; and pipeline/model/float64.py: the oracle perturbed by float32-sized roundings."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from pipeline.audit.noise import rounding_spread, sample_errors, sample_floors
from pipeline.model.float64 import UNIT_ROUNDOFF, float64_copy, perturbed


def test_the_perturbed_oracle_moves_by_about_the_roundings_its_sums_make():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(16, 16, 3, padding=1), nn.GroupNorm(4, 16)).eval()
    x = torch.rand(1, 16, 8, 8, dtype=torch.float64)
    with torch.no_grad():
        truth = float64_copy(model)(x)
        moved = perturbed(float64_copy(model), seed=1)(x)
    relative = float((moved - truth).abs().max() / truth.abs().max())
    # a conv of 144 terms and a GroupNorm over 256: a few sqrt(n) roundings, far below a bug's 1e-4
    assert 1 * UNIT_ROUNDOFF < relative < 300 * UNIT_ROUNDOFF
    with torch.no_grad():
        assert torch.equal(float64_copy(model)(x), truth)  # the copy it was made from is untouched


def test_floors_and_errors_are_per_sample():
    truth = np.array([[1.0, 2.0], [100.0, 200.0]])
    fp32 = truth + np.array([[1e-7, 0.0], [1e-5, 0.0]])
    floors = sample_floors(fp32, truth, [truth + 3e-5], atol=1e-9)
    # the first sample's floor is the perturbed spread; the second's, 16 roundings of its scale (200)
    assert floors == pytest.approx([3e-5, 16 * UNIT_ROUNDOFF * 200], rel=1e-6)
    assert list(sample_errors(truth + np.array([[0.0, 1e-3], [0.0, 0.0]]), truth)) == pytest.approx([1e-3, 0.0])
    assert np.isinf(sample_errors(np.full_like(truth, np.nan), truth)).all()


def test_the_perturbed_oracle_moves_a_norm_over_a_constant_group_by_its_centring_rounding():
    """GroupNorm with one channel per group on a constant signal (wav2vec 2.0's first layer on a constant
    waveform): the exact output is beta, but a float32 mean over n terms is off by ~sqrt(n) roundings of the
    signal, which the division by sqrt(eps) amplifies; the perturbed oracle must move by that much."""
    torch.manual_seed(0)
    conv, norm = nn.Conv1d(1, 8, 10, stride=5, bias=False), nn.GroupNorm(8, 8)
    with torch.no_grad():
        norm.weight.uniform_(0.5, 1.5)
        norm.bias.normal_()
    model = nn.Sequential(conv, norm).eval()
    x = torch.ones(1, 1, 4000, dtype=torch.float64)  # 799 frames, as wav2vec 2.0 on 4000 samples
    with torch.no_grad():
        truth = float64_copy(model)(x)
        moved = perturbed(float64_copy(model), seed=1)(x)
        signal = float64_copy(conv)(x).abs().max()
    assert torch.allclose(truth, norm.bias.double()[None, :, None].expand_as(truth))  # exactly beta
    centring = np.sqrt(truth.shape[-1]) * UNIT_ROUNDOFF * float(signal) / np.sqrt(norm.eps) * 1.5
    # moving each element by its own roundings alone (the conv's sqrt(10)) reaches a tenth of it
    assert 0.5 * centring < float((moved - truth).abs().max()) < 2 * centring


def test_a_layernorm_subclass_normalising_other_axes_keeps_the_relative_move_only():
    """HF's channels-first LayerNorms (ConvNeXt) subclass nn.LayerNorm over the channel axis of NCHW tensors:
    the centring term, written for nn.LayerNorm's trailing axes, must not be applied to them."""

    class ChannelsFirst(nn.LayerNorm):
        def forward(self, x):
            return super().forward(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)

    model = nn.Sequential(nn.Conv2d(3, 4, 1), ChannelsFirst(4)).eval()
    x = torch.rand(1, 3, 6, 5, dtype=torch.float64)
    with torch.no_grad():
        truth, moved = float64_copy(model)(x), perturbed(float64_copy(model), seed=1)(x)
    assert float((moved - truth).abs().max()) < 300 * UNIT_ROUNDOFF * float(truth.abs().max())


def test_the_rounding_spread_is_the_widest_float32_spread_over_the_output_scale():
    truth = np.array([[1.0, -2.0], [0.0, 0.0], [4.0, 0.5]])
    fp32 = truth + np.array([[2e-7, 0.0], [0.0, 0.0], [0.0, 0.0]])
    moved = truth + np.array([[0.0, 0.0], [0.0, 0.0], [0.0, 0.4]])
    # sample 0: PyTorch's 2e-7 of a scale 2; sample 1: an all-zero output, not ill-conditioned; sample 2: 0.4 of 4
    assert list(rounding_spread(fp32, truth, [moved])) == pytest.approx([1e-7, 0.0, 0.1])
