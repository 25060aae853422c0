"""The float64 oracle's models: a float64 copy of the user's model, and that copy moved by float32-sized
roundings (the perturbed oracle) to measure how much such errors grow through the model.

The oracle runners (pipeline/runners/torch_runner.py) build them, the audit's noise floor
(pipeline/audit/noise.py) and its layer-by-layer comparison read them; NOISE.md has the why.
"""
from __future__ import annotations

import copy

import numpy as np

# float32's unit roundoff: the relative error of one rounding.
UNIT_ROUNDOFF = float(np.finfo(np.float32).eps) / 2


def float64_copy(model):
    """A float64 copy of a PyTorch model (the oracle); the original is left untouched."""
    return copy.deepcopy(model).double().eval()


def perturbed(model64, seed: int):
    """The float64 model as a float32 program would run it, to first order: every floating parameter and
    buffer moved by one float32 rounding, and every leaf module's output by the rounding its own
    accumulation makes (sqrt(fan-in) roundings, random sign: a conv sums in_channels x kernel terms,
    a GroupNorm averages over its group). Where a model amplifies such errors (a norm over a nearly
    constant group, say), its outputs move as much as any correct float32 program's may."""
    import torch

    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for tensor in [*model64.parameters(), *model64.buffers()]:
            if tensor.is_floating_point():
                tensor.mul_(1 + UNIT_ROUNDOFF * _signs(tensor.shape, generator))
    for module in model64.modules():
        if not any(True for _ in module.children()):
            module.register_forward_hook(_rounding_hook(generator))
    return model64


def _signs(shape, generator):
    import torch

    return torch.randint(0, 2, tuple(shape), generator=generator, dtype=torch.float64) * 2 - 1


def _rounding_hook(generator):
    def hook(module, args, output):
        if not hasattr(output, "is_floating_point") or not output.is_floating_point():
            return output
        moved = output * (1 + UNIT_ROUNDOFF * np.sqrt(_fan_in(module, output)) * _signs(output.shape, generator))
        centring = _centring_error(module, args[0] if args else None, output)
        return moved if centring is None else moved + centring * _signs(output.shape, generator)
    return hook


def _centring_error(module, x, output):
    """A norm layer's rounding in x - mean, as it reaches the output: sqrt(n) roundings of the group's
    root mean square, divided by the group's sqrt(var + eps), times |gamma|; None for other modules.

    The relative move above misses it where a group is constant: the exact output is then beta
    whatever the input's scale, while a float32 program's mean is off by its summation's rounding,
    which the division by sqrt(eps) amplifies (wav2vec 2.0's GroupNorm with one channel per group on
    a constant waveform: 5e-4 to 1e-3 after the norm in ONNX Runtime, 0.6 at the logits; PyTorch's
    own mean happens to be exact there, so its float32 run alone would put the floor at 6e-3).
    """
    from torch import nn

    if x is None or not hasattr(x, "is_floating_point") or not x.is_floating_point() or x.shape != output.shape:
        return None
    kind = type(module)  # not subclasses: HF's channels-first LayerNorms normalise other axes than nn.LayerNorm's
    if kind is nn.GroupNorm:
        groups = x.reshape(x.shape[0], module.num_groups, -1)
        error = _group_error(groups, -1, module.eps).expand_as(groups).reshape(x.shape)
        gamma = module.weight.reshape(1, -1, *[1] * (x.dim() - 2)) if module.affine else None
    elif kind is nn.LayerNorm:
        dims = tuple(range(x.dim() - len(module.normalized_shape), x.dim()))
        error, gamma = _group_error(x, dims, module.eps), module.weight
    elif kind in (nn.InstanceNorm1d, nn.InstanceNorm2d, nn.InstanceNorm3d) and x.dim() > 2:
        error = _group_error(x, tuple(range(2, x.dim())), module.eps)
        gamma = module.weight.reshape(1, -1, *[1] * (x.dim() - 2)) if module.affine else None
    else:
        return None
    return error * (gamma.abs() if gamma is not None else 1)


def _group_error(x, dims, eps: float):
    count = int(np.prod([x.shape[d] for d in (dims if isinstance(dims, tuple) else (dims,))]))
    mean, var = x.mean(dim=dims, keepdim=True), x.var(dim=dims, keepdim=True, unbiased=False)
    return np.sqrt(count) * UNIT_ROUNDOFF * (mean.square() + var).sqrt() / (var + eps).sqrt()


def _fan_in(module, output) -> int:
    """How many terms a float32 program sums for each element of this module's output."""
    from torch import nn

    spatial = int(np.prod(output.shape[2:])) if output.dim() > 2 else 1
    if isinstance(module, nn.modules.conv._ConvNd):
        return module.in_channels // module.groups * int(np.prod(module.kernel_size))
    if isinstance(module, nn.Linear):
        return module.in_features
    if isinstance(module, nn.GroupNorm):
        return module.num_channels // module.num_groups * spatial
    if isinstance(module, nn.LayerNorm):
        return int(np.prod(module.normalized_shape))
    if isinstance(module, nn.modules.instancenorm._InstanceNorm):
        return spatial
    if isinstance(module, (nn.modules.pooling._AvgPoolNd, nn.modules.pooling._AdaptiveAvgPoolNd)):
        return max(1, int(np.prod(getattr(module, "kernel_size", 1)))) if isinstance(module, nn.modules.pooling._AvgPoolNd) else spatial
    return 1


def perturb_array(array: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A float input moved by one float32 rounding per element (relative, random sign); others unchanged."""
    if not np.issubdtype(array.dtype, np.floating):
        return array
    return array * (1 + UNIT_ROUNDOFF * rng.choice([-1.0, 1.0], size=array.shape))


def to_float64(array: np.ndarray) -> np.ndarray:
    """Float inputs become float64; integer and boolean inputs are passed through unchanged."""
    return array.astype(np.float64) if np.issubdtype(array.dtype, np.floating) else array
