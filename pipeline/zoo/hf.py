"""Third-party architectures from Hugging Face transformers, built from config classes.

Weights are random (seeded); nothing is downloaded. Convolutional models get realistic
BatchNorm statistics from `calibrate_batchnorm`. Each model is wrapped so that forward()
returns the logits tensor alone (HF returns ModelOutput objects, which the exporter and the
audit would have to unpack). Sizes are reduced where a full-size model would make one
`convert` take minutes on a small CPU; each config's comment states its reductions.
"""
from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # before transformers is imported: no hub access, ever

import math
from collections.abc import Callable

import torch
import transformers
from torch import nn

from pipeline.zoo.calibrate import calibrate_batchnorm

# Eager attention exports as plain MatMul, Softmax and Add whatever the exporter; SDPA's
# lowering varies with the exporter and opset.
ATTENTION = "eager"
SE_GATE_BIAS = 3.0


class ImageLogits(nn.Module):
    """An HF `*ForImageClassification` model whose forward takes pixel_values and returns logits."""

    def __init__(self, model: transformers.PreTrainedModel) -> None:
        super().__init__()
        self.model = model

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        return self.model(pixel_values=pixel_values).logits


class TextLogits(nn.Module):
    """An HF `*ForSequenceClassification` model whose forward takes token ids and a mask and returns logits."""

    def __init__(self, model: transformers.PreTrainedModel) -> None:
        super().__init__()
        self.model = model

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        return self.model(input_ids=input_ids, attention_mask=attention_mask).logits


def _image_model(model_class: type, config: transformers.PretrainedConfig, size: int, seed: int,
                 init: Callable[[nn.Module], None] | None = None) -> ImageLogits:
    """Build with a seed, optionally re-initialise, calibrate any BatchNorm, switch to eval()."""
    torch.manual_seed(seed)
    model = model_class(config)
    if init is not None:
        init(model)
    wrapped = ImageLogits(model)
    if any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in model.modules()):
        calibrate_batchnorm(wrapped, _images(config.num_channels, size, seed), seed=seed)
    return wrapped.eval()


def _images(channels: int, size: int, seed: int) -> torch.Tensor:
    """Seeded calibration images in [-1, 1): two of uniform noise, two smooth, two flat.

    Noise alone would leave BatchNorm statistics that have never seen large uniform regions,
    which natural images are full of and the audit's edge cases (constant images) consist of.
    """
    generator = torch.Generator().manual_seed(seed)
    noise = torch.rand(2, channels, size, size, generator=generator) * 2 - 1
    coarse = torch.rand(2, channels, 4, 4, generator=generator) * 2 - 1
    smooth = nn.functional.interpolate(coarse, size=(size, size), mode="bilinear", align_corners=False)
    flat = (torch.rand(2, channels, 1, 1, generator=generator) * 2 - 1).expand(2, channels, size, size)
    return torch.cat([noise, smooth, flat])


def resnet50(size: int = 64, width: float = 0.25, num_labels: int = 10, seed: int = 0) -> ImageLogits:
    """ResNet-50: bottleneck blocks, depths [3, 4, 6, 3]; `width` scales the stem (64) and stages (256-2048)."""
    config = transformers.ResNetConfig(
        layer_type="bottleneck", depths=[3, 4, 6, 3], embedding_size=round(64 * width),
        hidden_sizes=[round(c * width) for c in (256, 512, 1024, 2048)], num_labels=num_labels,
    )
    return _image_model(transformers.ResNetForImageClassification, config, size, seed)


def mobilenet_v1(size: int = 128, depth_multiplier: float = 0.25, num_labels: int = 10, seed: int = 0) -> ImageLogits:
    """MobileNetV1 with TF-style 'SAME' padding (asymmetric pads on stride-2 layers)."""
    config = transformers.MobileNetV1Config(
        image_size=size, depth_multiplier=depth_multiplier, tf_padding=True, num_labels=num_labels,
    )
    return _image_model(transformers.MobileNetV1ForImageClassification, config, size, seed)


def mobilenet_v2(size: int = 128, depth_multiplier: float = 0.35, num_labels: int = 10, seed: int = 0) -> ImageLogits:
    """MobileNetV2 (inverted residuals, linear bottlenecks) with TF-style 'SAME' padding."""
    config = transformers.MobileNetV2Config(
        image_size=size, depth_multiplier=depth_multiplier, tf_padding=True, num_labels=num_labels,
    )
    return _image_model(transformers.MobileNetV2ForImageClassification, config, size, seed)


def efficientnet_b0(size: int = 128, num_labels: int = 10, seed: int = 0) -> ImageLogits:
    """EfficientNet-B0 (width and depth coefficients 1.0), with an init that keeps activations alive."""
    config = transformers.EfficientNetConfig(
        image_size=size, width_coefficient=1.0, depth_coefficient=1.0, hidden_dim=1280, dropout_rate=0.2,
        num_labels=num_labels,
    )
    model = _image_model(transformers.EfficientNetForImageClassification, config, size, seed, init=_prepare_efficientnet)
    return _rematch_running_stats(model, _images(3, size, seed), seed)


def _prepare_efficientnet(model: nn.Module) -> None:
    """An init that keeps activations alive, and a global average pool as the pooler.

    HF's pooler is AvgPool2d(kernel_size=hidden_dim, ceil_mode=True): on a 4x4 map it is a
    global mean, but onnx2tf converts the 1280x1280 kernel by zero-padding the map to
    1280x1280x1280 (8 GiB of float32 per sample), which runs the audit out of memory.
    AdaptiveAvgPool2d(1) computes the same mean.
    """
    _reinit_fan_scaled(model)
    model.efficientnet.pooler = nn.AdaptiveAvgPool2d(1)


def _reinit_fan_scaled(model: nn.Module) -> None:
    """Conv weights kaiming-normal (fan_in), Linear weights N(0, 1/fan_in), biases 0, BatchNorm
    gamma 1; squeeze-excitation gates start open.

    HF's EfficientNet init draws every weight, BatchNorm gamma included, from N(0, 0.02):
    activations shrink by orders of magnitude per stage and the logits underflow to 0.0,
    which no audit can tell from zero. Fan-in scaling keeps each layer's output
    near unit variance before BatchNorm sees it. With zero gate biases, the gates sit at 0.5
    on textured images but open fully on a constant one, so each of the 16 blocks doubles a
    constant image's activations (logits of 1e3 for an all -1 image, where float32 rounding
    alone moves them by 4); a gate bias of 3 (sigmoid 0.95) removes that gain.
    """
    with torch.no_grad():
        for name, module in model.named_modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_in", nonlinearity="relu")
            elif isinstance(module, nn.Linear):
                nn.init.normal_(module.weight, std=1 / math.sqrt(module.in_features))
            elif isinstance(module, nn.BatchNorm2d):
                nn.init.ones_(module.weight)
            else:
                continue
            if getattr(module, "bias", None) is not None:
                nn.init.constant_(module.bias, SE_GATE_BIAS if name.endswith("squeeze_excite.expand") else 0.0)


def _rematch_running_stats(model: nn.Module, example: torch.Tensor, seed: int, passes: int = 4) -> nn.Module:
    """Re-estimate BatchNorm running statistics under the calibrated gamma and beta; eval().

    HF's EfficientNet BatchNorm momentum is 0.99 (TF's 'keep 99%' read as PyTorch's 'take
    99%'), so calibrate_batchnorm's passes match the statistics fully, and its perturbation
    then compounds through 49 BatchNorm layers with no renormalisation in between: logits
    of 1e3 (1e8 with HF's own init). Statistics re-estimated as a cumulative average match
    the activations, as trained ones do, and keep the calibrated random gamma and beta.
    """
    norms = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    momenta = [bn.momentum for bn in norms]
    for bn in norms:
        bn.reset_running_stats()
        bn.momentum = None  # a cumulative average over the passes
    generator = torch.Generator().manual_seed(seed + 1)
    model.train()
    with torch.no_grad():
        for _ in range(passes):
            model(example + 0.1 * torch.randn(example.shape, generator=generator))
    for bn, momentum in zip(norms, momenta):
        bn.momentum = momentum
    return model.eval()


def convnext_tiny(size: int = 64, width: float = 0.25, num_labels: int = 10, seed: int = 0) -> ImageLogits:
    """ConvNeXt-T: depths [3, 3, 9, 3]; `width` scales the stages (96-768).

    Layer scale starts at 0.1, not 1e-6: at 1e-6 every residual block is an identity, and an
    error inside one would not reach the logits.
    """
    config = transformers.ConvNextConfig(
        image_size=size, depths=[3, 3, 9, 3], hidden_sizes=[round(c * width) for c in (96, 192, 384, 768)],
        layer_scale_init_value=0.1, num_labels=num_labels,
    )
    return _image_model(transformers.ConvNextForImageClassification, config, size, seed, init=_random_biases)


def _random_biases(model: nn.Module, std: float = 0.02) -> None:
    """Conv and Linear biases from N(0, std), as trained biases are, instead of HF's zeros.

    With zero biases a blank image gives all-zero activations: every LayerNorm then divides
    0 by sqrt(0 + eps), and with eps 1e-12 (ConvNeXt's), which float16 flushes to 0, TFLite
    fp16 returns NaN for the audit's all-zeros sample.
    """
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, (nn.Conv2d, nn.Linear)) and module.bias is not None:
                nn.init.normal_(module.bias, std=std)


def regnet_y_400mf(size: int = 96, num_labels: int = 10, seed: int = 0) -> ImageLogits:
    """RegNetY-400MF: Y blocks (grouped conv + squeeze-excitation), depths [1, 3, 6, 6]."""
    config = transformers.RegNetConfig(
        embedding_size=32, hidden_sizes=[48, 104, 208, 440], depths=[1, 3, 6, 6], groups_width=8, layer_type="y",
        num_labels=num_labels,
    )
    return _image_model(transformers.RegNetForImageClassification, config, size, seed)


def vit_small(size: int = 64, num_labels: int = 10, seed: int = 0) -> ImageLogits:
    """A small ViT: patch 8, hidden 192, 4 layers, 3 heads, MLP 768."""
    config = transformers.ViTConfig(
        image_size=size, patch_size=8, hidden_size=192, num_hidden_layers=4, num_attention_heads=3,
        intermediate_size=768, num_labels=num_labels, attn_implementation=ATTENTION,
    )
    return _image_model(transformers.ViTForImageClassification, config, size, seed)


def bert_small(vocab_size: int = 256, num_labels: int = 4, seed: int = 0) -> TextLogits:
    """A small BERT: hidden 128, 2 layers, 2 heads, MLP 512, vocabulary 256."""
    config = transformers.BertConfig(
        vocab_size=vocab_size, hidden_size=128, num_hidden_layers=2, num_attention_heads=2, intermediate_size=512,
        max_position_embeddings=128, num_labels=num_labels, initializer_range=0.1, attn_implementation=ATTENTION,
    )
    torch.manual_seed(seed)
    return TextLogits(transformers.BertForSequenceClassification(config)).eval()


def beit_tiny(size: int = 32, num_labels: int = 10, seed: int = 0) -> ImageLogits:
    """A tiny BEiT (issue 25): patch 8, hidden 32, 2 layers, 2 heads, MLP 64, and HF's default
    layer_norm_eps=1e-12, which float16 stores as 0 (the fp16_underflow lint and the fp16 cure)."""
    config = transformers.BeitConfig(
        image_size=size, patch_size=8, hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
        num_labels=num_labels, attn_implementation=ATTENTION,
    )
    assert config.layer_norm_eps == 1e-12  # the point of this model: HF's default, not set here
    return _image_model(transformers.BeitForImageClassification, config, size, seed)
