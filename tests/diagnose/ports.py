"""Hand ports in Keras, written the way a person would: Keras layers, weights copied over."""
from __future__ import annotations

from tests import support

from pathlib import Path

import keras
import numpy as np
import torch


def t2n(tensor: torch.Tensor) -> np.ndarray:
    return tensor.detach().numpy()


def conv(module: torch.nn.Conv2d, padding: str, name: str, activation=None) -> keras.layers.Conv2D:
    layer = keras.layers.Conv2D(module.out_channels, module.kernel_size, strides=module.stride, padding=padding,
                                use_bias=module.bias is not None, name=name, activation=activation)
    layer.build((None, None, None, module.in_channels))
    weights = [t2n(module.weight).transpose(2, 3, 1, 0)] + ([t2n(module.bias)] if module.bias is not None else [])
    layer.set_weights(weights)
    return layer


def bn(module: torch.nn.BatchNorm2d, name: str, epsilon: float | None = None) -> keras.layers.BatchNormalization:
    layer = keras.layers.BatchNormalization(name=name, **({} if epsilon is None else {"epsilon": epsilon}))
    layer.build((None, None, None, module.num_features))
    layer.set_weights([t2n(t) for t in (module.weight, module.bias, module.running_mean, module.running_var)])
    return layer


def dense(module: torch.nn.Linear, name: str, weight: np.ndarray | None = None) -> keras.layers.Dense:
    layer = keras.layers.Dense(module.out_features, name=name)
    layer.build((None, module.in_features))
    layer.set_weights([(t2n(module.weight) if weight is None else weight).T, t2n(module.bias)])
    return layer


def focus_port(model, epsilon: float | None = None):
    """The report's block in Keras: space-to-depth by slicing, Conv2D, BatchNormalization, LeakyReLU(0.1)."""
    x = inputs = keras.Input((64, 64, 3), name="x")
    parts = [x[:, ::2, ::2, :], x[:, 1::2, ::2, :], x[:, ::2, 1::2, :], x[:, 1::2, 1::2, :]]
    x = keras.layers.Concatenate(axis=-1, name="focus")(parts)
    x = conv(model.conv, "same", "conv")(x)
    x = bn(model.bn, "bn", epsilon)(x)
    x = keras.layers.LeakyReLU(0.1, name="act")(x)
    return keras.Model(inputs, x)


def stride2_port(model, padding: str = "same", with_input: bool = True):
    """A Sequential port of models.stride2 (with an Input layer, or built afterwards as people also do)."""
    layers = [keras.Input((32, 32, 3))] if with_input else []
    for i in (0, 3):
        layers += [conv(model[i], padding, f"conv{i}"), bn(model[i + 1], f"bn{i}", epsilon=1e-5), keras.layers.ReLU(name=f"relu{i}")]
    port = keras.Sequential(layers)
    if not with_input:
        port.build((None, 32, 32, 3))
    return port


def deep_port(model, epsilon: float | None = None):
    x = inputs = keras.Input((16, 16, 3))
    for i in range(0, len(model), 3):
        x = conv(model[i], "same", f"conv{i // 3}")(x)
        x = bn(model[i + 1], f"bn{i // 3}", epsilon)(x)
        x = keras.layers.ReLU(name=f"relu{i // 3}")(x)
    return keras.Model(inputs, x)


def diagnose_port(tmp_path: Path, factory: str, shape: list[int], make_port, fix: bool = True):
    """Save make_port(model) for tests.diagnose.models:<factory> and diagnose it (with --fix unless fix=False)."""
    from pipeline.artifacts.folder import ArtifactDir
    from pipeline.config import load_config
    from pipeline.diagnose.stage import DiagnoseRequest, diagnose
    from pipeline.model.torch_model import build_model

    config = write_config(tmp_path, factory, shape, factory)
    port = tmp_path / f"{factory}.keras"
    make_port(build_model(load_config(config))).save(port)
    request = DiagnoseRequest(load_config(config), port, ArtifactDir.for_model(factory, str(tmp_path / "out")),
                              fix=tmp_path / "fixed.keras" if fix else None)
    return diagnose(request)


def write_config(tmp_path: Path, factory: str, shape: list[int], name: str) -> Path:
    return support.write_config(tmp_path / f"{name}.yaml", f"tests.diagnose.models:{factory}",
                                [{"name": "x", "shape": list(shape), "low": -0.5, "high": 0.5}], name=name, samples=3)


def flatten_port(model, permute_kernel: bool = False, conv_bias: bool = True):
    """Conv, ReLU, Flatten, Dense; the Dense kernel is the Linear weight transposed (the naive copy),
    or with its rows permuted to NHWC flatten order (the right copy). conv_bias=False forgets the conv's bias."""
    linear = model[3]
    weight = t2n(linear.weight)
    if permute_kernel:
        weight = weight.reshape(10, 4, 8, 8).transpose(0, 2, 3, 1).reshape(10, -1)
    x = inputs = keras.Input((8, 8, 3))
    if conv_bias:
        x = conv(model[0], "same", "conv")(x)
    else:
        layer = keras.layers.Conv2D(4, 3, padding="same", use_bias=False, name="conv")
        layer.build((None, 8, 8, 3))
        layer.set_weights([t2n(model[0].weight).transpose(2, 3, 1, 0)])
        x = layer(x)
    x = keras.layers.ReLU(name="relu")(x)
    x = keras.layers.Flatten(name="flatten")(x)
    x = dense(linear, "dense", weight)(x)
    return keras.Model(inputs, x)


def mixed_port(model):
    """Four classic slips in one Sequential port: Keras' LeakyReLU default slope, an average pool
    with TF 'same' padding, bilinear for nearest upsampling, LayerNormalization's default epsilon."""
    linear = model[6]
    weight = t2n(linear.weight).reshape(6, 4, 16, 16).transpose(0, 2, 3, 1).reshape(6, -1)
    norm = keras.layers.LayerNormalization(name="norm")
    norm.build((None, 6))
    norm.set_weights([t2n(model[7].weight), t2n(model[7].bias)])
    return keras.Sequential([
        keras.Input((16, 16, 3)), conv(model[0], "same", "conv0"), keras.layers.LeakyReLU(name="leaky"),
        keras.layers.AveragePooling2D(3, strides=2, padding="same", name="pool"),
        keras.layers.UpSampling2D(2, interpolation="bilinear", name="up"), conv(model[4], "valid", "conv1"),
        keras.layers.Flatten(name="flatten"), dense(linear, "dense", weight), norm,
    ])


def twin_port(model):
    x = inputs = keras.Input((8, 8, 3))
    x = conv(model[0], "same", "conv0")(x)
    x = bn(model[1], "bn0", epsilon=1e-5)(x)
    x = conv(model[2], "same", "conv1")(x)
    x = bn(model[3], "bn1", epsilon=1e-5)(x)
    return keras.Model(inputs, x)


def depthwise(module: torch.nn.Conv2d, padding: str, name: str) -> keras.layers.DepthwiseConv2D:
    layer = keras.layers.DepthwiseConv2D(module.kernel_size, strides=module.stride, padding=padding, use_bias=False, name=name)
    layer.build((None, None, None, module.in_channels))
    layer.set_weights([t2n(module.weight).transpose(2, 3, 0, 1)])  # (C, 1, h, w) -> (h, w, C, 1)
    return layer


def mobile_port(model, explicit_padding: bool = False, epsilon: float = 1e-5):
    """A hand port of models.mobile; stride 2 either with 'same' (wrong) or ZeroPadding2D + 'valid' (right)."""
    stem = [keras.layers.ZeroPadding2D(1, name="stem_pad"), conv(model[0], "valid", "stem")] if explicit_padding else [
        conv(model[0], "same", "stem")]
    return keras.Sequential([
        keras.Input((32, 32, 3)), *stem, bn(model[1], "stem_bn", epsilon), keras.layers.ReLU(max_value=6.0, name="stem_relu6"),
        depthwise(model[3], "same", "dw"), bn(model[4], "dw_bn", epsilon), keras.layers.Activation("relu6", name="dw_relu6"),
        conv(model[6], "valid", "pw"), bn(model[7], "pw_bn", epsilon),
    ])


def flatten_fused_port(model):
    """flatten_head with the ReLU fused into the Conv2D and the Dense kernel permuted correctly."""
    linear = model[3]
    weight = t2n(linear.weight).reshape(10, 4, 8, 8).transpose(0, 2, 3, 1).reshape(10, -1)
    x = inputs = keras.Input((8, 8, 3))
    x = conv(model[0], "same", "conv", activation="relu")(x)
    x = keras.layers.Flatten(name="flatten")(x)
    return keras.Model(inputs, dense(linear, "dense", weight)(x))


def deep_convbn_port(model, epsilon: float | None = None):
    """configs/deep_convbn (pipeline.zoo.deep): stem, 32 residual Conv-ReLU-BatchNorm blocks, head."""
    x = inputs = keras.Input((32, 32, 3))
    x = conv(model.stem, "same", "stem")(x)
    for i, block in enumerate(model.blocks):
        y = conv(block[0], "same", f"b{i}_conv")(x)
        y = bn(block[2], f"b{i}_bn", epsilon)(keras.layers.ReLU(name=f"b{i}_relu")(y))
        x = keras.layers.Add(name=f"b{i}_add")([x, y])
    return keras.Model(inputs, conv(model.head, "same", "head")(x))


def residual_port(model, down: str = "pad"):
    """configs/residual_file: ZeroPad2d((0, 1, 0, 1)) + stride-2 conv ported as ZeroPadding2D + 'valid'
    (down='pad'), as 'same' (the same pads at 40x40), or as a bare 'valid' conv (wrong)."""
    x = inputs = keras.Input((40, 40, 3))
    if down == "pad":
        x = keras.layers.ZeroPadding2D(((0, 1), (0, 1)), name="down_pad")(x)
    x = conv(model.down, "same" if down == "same" else "valid", "down")(x)
    block = model.block
    y = keras.ops.pad(x, [[0, 0], [1, 1], [1, 1], [0, 0]], mode="reflect")
    y = keras.layers.ReLU()(bn(block.bn1, "bn1", 1e-5)(conv(block.conv1, "valid", "conv1")(y)))
    y = bn(block.bn2, "bn2", 1e-5)(conv(block.conv2, "same", "conv2")(y))
    x = keras.layers.ReLU()(keras.layers.Add()([x, y]))
    x = keras.layers.MaxPooling2D(3, 2, padding="same", name="pool")(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    return keras.Model(inputs, dense(model.head, "head")(x))


def gelu_group_port(model):
    """GroupNormalization at Keras' default epsilon, exact GELU where PyTorch approximates, ReLU6 as ReLU(max_value=6)."""
    norm = keras.layers.GroupNormalization(groups=2, name="gn")
    norm.build((None, 16, 16, 8))
    norm.set_weights([t2n(model[1].weight), t2n(model[1].bias)])
    return keras.Sequential([
        keras.Input((16, 16, 3)), conv(model[0], "same", "conv0"), norm, keras.layers.Activation("gelu", name="gelu"),
        keras.layers.MaxPooling2D(2, name="pool"), conv(model[4], "valid", "conv1"), keras.layers.ReLU(max_value=6.0, name="relu6"),
    ])


def focus_port_tf_order(model, epsilon: float | None = None):
    """The report's block with space-to-depth by Reshape/Permute in TF's channel order ((0,0), (0,1),
    (1,0), (1,1)) and the conv kernel's input channels reordered to match (Focus: (0,0), (1,0), (0,1), (1,1))."""
    x = inputs = keras.Input((64, 64, 3), name="x")
    x = keras.layers.Reshape((32, 2, 32, 2, 3))(x)
    x = keras.layers.Permute((1, 3, 2, 4, 5))(x)
    x = keras.layers.Reshape((32, 32, 12), name="space_to_depth")(x)
    order = [(dy + 2 * dx) * 3 + c for dy in (0, 1) for dx in (0, 1) for c in range(3)]
    layer = keras.layers.Conv2D(32, 3, padding="same", use_bias=False, name="conv")
    layer.build((None, 32, 32, 12))
    layer.set_weights([t2n(model.conv.weight)[:, order].transpose(2, 3, 1, 0)])
    x = bn(model.bn, "bn", epsilon)(layer(x))
    return keras.Model(inputs, keras.layers.LeakyReLU(0.1, name="act")(x))
