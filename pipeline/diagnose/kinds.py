"""What a Keras layer or a PyTorch module is, in one shared vocabulary, and its weights in PyTorch's form.

Kinds: conv, linear, bn, layernorm, groupnorm (hold weights), act, pool, upsample, flatten, pad
(parameter-free). Keras weights are brought to PyTorch's layout (OIHW kernels, (out, in) Dense),
so mapping compares like with like.
"""
from __future__ import annotations

import numpy as np
import torch
from torch import nn

WEIGHTED_KINDS = ("conv", "linear", "bn", "layernorm", "groupnorm")

_TORCH_KINDS: tuple[tuple[type, str], ...] = (
    (nn.Conv1d, "conv"), (nn.Conv2d, "conv"), (nn.Linear, "linear"),
    (nn.modules.batchnorm._BatchNorm, "bn"), (nn.LayerNorm, "layernorm"), (nn.GroupNorm, "groupnorm"),
    (nn.LeakyReLU, "act"), (nn.ReLU, "act"), (nn.ReLU6, "act"), (nn.Hardtanh, "act"), (nn.GELU, "act"),
    (nn.SiLU, "act"), (nn.Sigmoid, "act"), (nn.Tanh, "act"), (nn.ELU, "act"), (nn.Hardswish, "act"),
    (nn.MaxPool1d, "pool"), (nn.MaxPool2d, "pool"), (nn.AvgPool1d, "pool"), (nn.AvgPool2d, "pool"),
    (nn.Upsample, "upsample"), (nn.Flatten, "flatten"), (nn.ZeroPad2d, "pad"), (nn.ConstantPad2d, "pad"),
)

_KERAS_KINDS = {
    "Conv1D": "conv", "Conv2D": "conv", "DepthwiseConv2D": "conv", "Dense": "linear",
    "BatchNormalization": "bn", "LayerNormalization": "layernorm", "GroupNormalization": "groupnorm",
    "LeakyReLU": "act", "ReLU": "act", "Activation": "act", "ELU": "act",
    "MaxPooling1D": "pool", "MaxPooling2D": "pool", "AveragePooling1D": "pool", "AveragePooling2D": "pool",
    "UpSampling2D": "upsample", "Flatten": "flatten", "ZeroPadding2D": "pad", "ZeroPadding1D": "pad",
}


def torch_kind(module: nn.Module) -> str | None:
    for cls, kind in _TORCH_KINDS:
        if isinstance(module, cls):
            return kind
    return None


def keras_kind(layer) -> str | None:
    return _KERAS_KINDS.get(type(layer).__name__)


def torch_weights(module: nn.Module) -> list[np.ndarray]:
    """The arrays that identify a module: kernel/weight for conv and linear, all four for BatchNorm."""
    if isinstance(module, nn.modules.batchnorm._BatchNorm):
        arrays = [module.weight, module.bias] if module.affine else []
        arrays += [module.running_mean, module.running_var] if module.running_mean is not None else []
        return [_np(a) for a in arrays]
    if isinstance(module, (nn.LayerNorm, nn.GroupNorm)):
        return [_np(a) for a in (module.weight, module.bias) if a is not None]
    return [_np(module.weight)]


def torch_bias(module: nn.Module) -> np.ndarray | None:
    bias = getattr(module, "bias", None)
    return None if bias is None else _np(bias)


def keras_weights(layer) -> list[np.ndarray]:
    """The same arrays as torch_weights, from a Keras layer, in PyTorch's layout."""
    name = type(layer).__name__
    if name == "BatchNormalization":
        return [_np(v) for v in _bn_arrays(layer)]
    if name in ("LayerNormalization", "GroupNormalization"):
        return [_np(w) for w in layer.weights]
    kernel = _np(layer.weights[0])
    if name == "Conv2D":
        return [kernel.transpose(3, 2, 0, 1)]
    if name == "Conv1D":
        return [kernel.transpose(2, 1, 0)]
    if name == "DepthwiseConv2D":
        h, w, c, m = kernel.shape
        return [kernel.reshape(h, w, c * m).transpose(2, 0, 1)[:, None]]
    return [kernel.T]  # Dense


def keras_bias(layer) -> np.ndarray | None:
    if type(layer).__name__ in ("BatchNormalization", "LayerNormalization", "GroupNormalization"):
        return None
    return _np(layer.weights[1]) if getattr(layer, "use_bias", False) and len(layer.weights) > 1 else None


def _bn_arrays(layer) -> list:
    # Keras omits gamma/beta when scale/center is off; PyTorch's affine=False omits both.
    by_role = {w.path.rsplit("/", 1)[-1]: w for w in layer.weights}
    return [by_role[k] for k in ("gamma", "beta", "moving_mean", "moving_variance") if k in by_role]


def weights_equal(a: list[np.ndarray], b: list[np.ndarray]) -> bool:
    """Equal up to float32 rounding of a copy."""
    return len(a) == len(b) and all(x.shape == y.shape and np.allclose(x, y, rtol=1e-5, atol=1e-7) for x, y in zip(a, b))


def nhwc_flatten_weight(weight: np.ndarray, chw: tuple[int, int, int]) -> np.ndarray:
    """A Linear weight after an NCHW flatten, with its input features in NHWC flatten order."""
    c, h, w = chw
    return weight.reshape(weight.shape[0], c, h, w).transpose(0, 2, 3, 1).reshape(weight.shape[0], -1)


def _np(value) -> np.ndarray:
    if isinstance(value, torch.Tensor):
        return value.detach().cpu().numpy()
    import keras

    return np.asarray(keras.ops.convert_to_numpy(value))
