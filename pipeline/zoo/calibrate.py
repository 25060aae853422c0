"""Give BatchNorm layers realistic statistics without training data."""
from __future__ import annotations

import torch


def calibrate_batchnorm(model: torch.nn.Module, example: torch.Tensor, passes: int = 4, seed: int = 0) -> torch.nn.Module:
    """Run a few train-mode passes so running stats match the activations, then perturb them.

    Freshly initialised BatchNorm (mean 0, var 1, gamma 1, beta 0) hides epsilon and
    padding mistakes; realistic, slightly perturbed statistics make them visible.
    """
    generator = torch.Generator().manual_seed(seed)
    model.train()
    with torch.no_grad():
        for _ in range(passes):
            noise = torch.randn(example.shape, generator=generator) * 0.1
            model(example + noise)
        for module in model.modules():
            if isinstance(module, torch.nn.modules.batchnorm._BatchNorm):
                _perturb(module, generator)
    return model.eval()


def _perturb(bn: torch.nn.modules.batchnorm._BatchNorm, generator: torch.Generator) -> None:
    size = bn.num_features
    bn.running_mean.add_(0.1 * torch.randn(size, generator=generator))
    bn.running_var.mul_(torch.empty(size).uniform_(0.5, 1.5, generator=generator))
    if bn.affine:
        bn.weight.copy_(torch.empty(size).uniform_(0.5, 1.5, generator=generator))
        bn.bias.copy_(0.1 * torch.randn(size, generator=generator))
