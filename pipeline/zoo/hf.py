"""Third-party architectures from Hugging Face transformers, built from config classes.

Weights are random (seeded); nothing is downloaded. Convolutional models get realistic
BatchNorm statistics from `calibrate_batchnorm` (see `_calibrated`). Each model is wrapped so that forward()
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

# Attention as plain MatMul/Softmax: SDPA exports as ops that onnx2tf 1.x may not know.
ATTENTION = "eager"


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
    """Build with a seed, optionally re-initialise, calibrate any BatchNorm on images in [-1, 1), eval()."""
    torch.manual_seed(seed)
    model = model_class(config)
    if init is not None:
        init(model)
    example = torch.rand(4, config.num_channels, size, size, generator=torch.Generator().manual_seed(seed)) * 2 - 1
    return _calibrated(ImageLogits(model), example, seed)


def _calibrated(model: nn.Module, example: torch.Tensor, seed: int, passes: int = 4) -> nn.Module:
    """calibrate_batchnorm, then running statistics re-estimated under its gamma and beta; eval().

    calibrate_batchnorm leaves statistics that do not match the activations they meet in
    eval mode: with PyTorch's momentum 0.1, four passes move them only a third of the way
    from (mean 0, var 1) (ResNet-50's activations then have 2-20% of the running variance), and
    its perturbation compounds through deep stacks (EfficientNet-B0's 49 BatchNorm layers turn
    it into logits of 1e4 to 1e8). Re-estimated as a cumulative
    average, the statistics match the activations, as trained ones do, and keep the
    calibrated random gamma and beta.
    """
    norms = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    if not norms:  # ConvNeXt and ViT: LayerNorm only
        return model.eval()
    calibrate_batchnorm(model, example, passes=passes, seed=seed)
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


def resnet50(size: int = 96, num_labels: int = 10, seed: int = 0) -> ImageLogits:
    """ResNet-50: bottleneck blocks, depths [3, 4, 6, 3], widths 256-2048 (ResNetConfig's defaults)."""
    config = transformers.ResNetConfig(layer_type="bottleneck", depths=[3, 4, 6, 3], num_labels=num_labels)
    return _image_model(transformers.ResNetForImageClassification, config, size, seed)


def mobilenet_v1(size: int = 128, num_labels: int = 10, seed: int = 0) -> ImageLogits:
    """MobileNetV1 1.0 with TF-style 'SAME' padding (asymmetric pads on stride-2 layers)."""
    config = transformers.MobileNetV1Config(image_size=size, tf_padding=True, num_labels=num_labels)
    return _image_model(transformers.MobileNetV1ForImageClassification, config, size, seed)


def mobilenet_v2(size: int = 128, num_labels: int = 10, seed: int = 0) -> ImageLogits:
    """MobileNetV2 1.0 with TF-style 'SAME' padding."""
    config = transformers.MobileNetV2Config(image_size=size, tf_padding=True, num_labels=num_labels)
    return _image_model(transformers.MobileNetV2ForImageClassification, config, size, seed)


def efficientnet_b0(size: int = 128, num_labels: int = 10, seed: int = 0) -> ImageLogits:
    """EfficientNet-B0 (width and depth coefficients 1.0), with an init that keeps activations alive."""
    config = transformers.EfficientNetConfig(
        image_size=size, width_coefficient=1.0, depth_coefficient=1.0, hidden_dim=1280, dropout_rate=0.2,
        num_labels=num_labels,
    )
    return _image_model(transformers.EfficientNetForImageClassification, config, size, seed, init=_reinit_fan_scaled)


def _reinit_fan_scaled(model: nn.Module) -> None:
    """Conv weights kaiming-normal (fan_in), Linear weights N(0, 1/fan_in), biases 0, BatchNorm gamma 1.

    HF's EfficientNet init draws every weight, BatchNorm gamma included, from N(0, 0.02):
    activations shrink by orders of magnitude per stage and the logits underflow to 0 (1e-31
    at best), which no audit can tell from zero. Fan-in scaling keeps each layer's output
    near unit variance before BatchNorm sees it.
    """
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_in", nonlinearity="relu")
            elif isinstance(module, nn.Linear):
                nn.init.normal_(module.weight, std=1 / math.sqrt(module.in_features))
            elif isinstance(module, nn.BatchNorm2d):
                nn.init.ones_(module.weight)
            else:
                continue
            if getattr(module, "bias", None) is not None:
                nn.init.zeros_(module.bias)


def convnext_tiny(size: int = 96, num_labels: int = 10, seed: int = 0) -> ImageLogits:
    """ConvNeXt-T: depths [3, 3, 9, 3], widths 96-768 (ConvNextConfig's defaults)."""
    config = transformers.ConvNextConfig(image_size=size, num_labels=num_labels, layer_scale_init_value=0.1)
    return _image_model(transformers.ConvNextForImageClassification, config, size, seed)


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


def bert_small(vocab_size: int = 1000, num_labels: int = 4, seed: int = 0) -> TextLogits:
    """A small BERT: hidden 128, 2 layers, 2 heads, MLP 512, vocabulary 1000."""
    config = transformers.BertConfig(
        vocab_size=vocab_size, hidden_size=128, num_hidden_layers=2, num_attention_heads=2, intermediate_size=512,
        max_position_embeddings=128, num_labels=num_labels, initializer_range=0.1, attn_implementation=ATTENTION,
    )
    torch.manual_seed(seed)
    return TextLogits(transformers.BertForSequenceClassification(config)).eval()
