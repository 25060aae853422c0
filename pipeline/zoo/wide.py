"""The wide zoo (configs/zoo_wide/): one tiny model of each of many `transformers` architectures.

Every family a user brings: CNNs, CNN-transformer hybrids, vision transformers (relative
position bias, window and focal attention), dense heads (segmentation, depth, detection),
text encoders, decoder-only language models (logits, no cache) and audio models. Each entry
is a config class at a tiny size, the model class that takes it, the inputs it runs on and
the output fields it returns; `build(arch)` is the configs' factory. Nothing is downloaded.

Realistic initialisation, so that a conversion error reaches the outputs:
- Conv and Linear biases from N(0, 0.02), not zeros (see hf._random_biases);
- layer scales at 0.1 (HF's 1e-5 or 1e-6 make each residual block an identity);
- `initializer_range` 0.1 on the transformers (0.02 leaves logits that barely move);
- in models with BatchNorm: fan-in scaled conv weights, random gamma and beta, and running
  statistics that match the activations under them (see _calibrate).
`python -m pipeline.zoo.wide configs/zoo_wide` writes one YAML config per entry; a test
checks the committed configs match this table.
"""
from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # before transformers is imported: no hub access, ever

import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch
import transformers as tf
from torch import nn

from pipeline.zoo.hf import ATTENTION, _images, _prepare_efficientnet

BIAS_STD = 0.02
LAYER_SCALE = 0.1
INIT_RANGE = 0.1  # transformers' initializer_range (0.02 by default)
VOCAB = 256
TOKENS = 32
TEXT = dict(vocab_size=VOCAB, hidden_size=64, num_hidden_layers=2, num_attention_heads=2, intermediate_size=128,
            max_position_embeddings=64, initializer_range=INIT_RANGE, attn_implementation=ATTENTION)
DECODER = dict(vocab_size=VOCAB, hidden_size=64, num_hidden_layers=2, num_attention_heads=4, intermediate_size=128,
               max_position_embeddings=64, initializer_range=INIT_RANGE, use_cache=False, attn_implementation=ATTENTION)
VIT = dict(image_size=32, patch_size=4, hidden_size=64, num_hidden_layers=2, num_attention_heads=2, intermediate_size=128,
           initializer_range=INIT_RANGE, attn_implementation=ATTENTION)
AUDIO = dict(hidden_size=64, num_hidden_layers=2, num_attention_heads=2, intermediate_size=128, conv_dim=(32,) * 7,
             num_conv_pos_embeddings=16, num_conv_pos_embedding_groups=4, initializer_range=INIT_RANGE,
             attn_implementation=ATTENTION)
SAMPLES = 4000  # waveform samples: 12 frames after wav2vec2's 320x feature encoder
STAGES4 = dict(depths=[1, 1, 2, 1], hidden_sizes=[16, 32, 64, 128])


@dataclass(frozen=True)
class Input:
    """One forward() argument as the YAML config declares it."""

    name: str
    shape: tuple[int, ...]
    dtype: str = "float32"
    low: float = -1.0
    high: float = 1.0


def image(size: int, channels: int = 3) -> tuple[Input, ...]:
    return (Input("pixel_values", (1, channels, size, size)),)


def tokens(mask: bool = True, length: int = TOKENS) -> tuple[Input, ...]:
    ids = Input("input_ids", (1, length), "int64", 0, VOCAB)
    # all ones: padding would need per-sample masks, which random inputs do not have
    return (ids, Input("attention_mask", (1, length), "int64", 1, 2)) if mask else (ids,)


def waveform(samples: int = SAMPLES) -> tuple[Input, ...]:
    return (Input("input_values", (1, samples)),)


@dataclass(frozen=True)
class Arch:
    """A tiny model of one architecture: how to build it, what it takes, what it returns."""

    name: str
    family: str
    summary: str  # what it is and how it was reduced: the config's comment
    config: Callable[[], tf.PretrainedConfig]
    model_class: type
    inputs: tuple[Input, ...]
    outputs: tuple[str, ...] = ("logits",)
    prepare: Callable[[nn.Module], None] | None = None  # after the generic init, before calibration
    fixed: dict = field(default_factory=dict)  # extra forward() keyword arguments (tensors)


class Wrapped(nn.Module):
    """An HF model whose forward takes the configured inputs positionally and returns plain tensors."""

    def __init__(self, model: nn.Module, names: tuple[str, ...], outputs: tuple[str, ...], fixed: dict) -> None:
        super().__init__()
        self.model = model
        self.names = names
        self.outputs = outputs
        for key, value in fixed.items():
            self.register_buffer(f"fixed_{key}", value, persistent=False)
        self.fixed_keys = tuple(fixed)

    def forward(self, *inputs: torch.Tensor):
        kwargs = dict(zip(self.names, inputs))
        kwargs.update({key: getattr(self, f"fixed_{key}") for key in self.fixed_keys})
        result = self.model(**kwargs)
        values = tuple(result[name] for name in self.outputs)
        return values[0] if len(values) == 1 else values


def build(arch: str, seed: int = 0) -> Wrapped:
    """The factory every configs/zoo_wide/*.yaml names: build `arch` seeded, initialised, calibrated, in eval()."""
    if arch not in ARCHS:
        raise ValueError(f"unknown wide-zoo architecture '{arch}'; known: {', '.join(sorted(ARCHS))}")
    entry = ARCHS[arch]
    torch.manual_seed(seed)
    model = entry.model_class(entry.config())
    _realistic_init(model)
    if entry.prepare is not None:
        entry.prepare(model)
    wrapped = Wrapped(model, tuple(i.name for i in entry.inputs), entry.outputs, entry.fixed)
    if any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in model.modules()):
        _fan_in_convs(model)
        _calibrate(wrapped, entry, seed)
    return wrapped.eval()


def _realistic_init(model: nn.Module) -> None:
    """Biases from N(0, BIAS_STD) instead of zeros: see hf._random_biases (LayerNorm of a blank input)."""
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, (nn.Conv1d, nn.Conv2d, nn.Linear)) and module.bias is not None:
                nn.init.normal_(module.bias, std=BIAS_STD)


def _fan_in_convs(model: nn.Module) -> None:
    """Conv weights from kaiming-normal (fan_in) instead of HF's N(0, 0.02), in models with BatchNorm.

    With N(0, 0.02) a conv's output variance falls below BatchNorm's eps (1e-5), which then
    divides by sqrt(eps) rather than by the activations' spread: MobileViT's running variances
    reach 1e-13 and its outputs overflow to NaN. Fan-in scaling keeps each conv's output near
    unit variance, as trained convs are.
    """
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_in", nonlinearity="relu")


def _calibrate(wrapped: Wrapped, entry: Arch, seed: int, passes: int = 4) -> None:
    """Random BatchNorm gamma and beta first, then running statistics that match the activations,
    then a perturbation in proportion to them.

    calibrate_batchnorm (the zoo's) draws gamma after the statistics, and runs 4 passes at
    PyTorch's momentum 0.1, which move the running statistics a third of the way from (0, 1).
    Where HF initialises gamma small (MobileViT: N(0, 0.02)) each layer then passes on a
    50x gain it was not calibrated for, and the outputs overflow to NaN; where the weights are
    small, a BatchNorm divides by ~1 instead of the activations' spread, and the outputs stop
    depending on the input (LeViT: 1e-8 of their scale). Here the statistics are a cumulative
    average over the passes under the final gamma and beta; the mean is shifted by 0.1 of each
    channel's own deviation (an absolute 0.1 is a 100-sigma shift on a quiet channel), and the
    variance is kept above 1% of the layer's mean so that a channel silent on the calibration
    inputs is not amplified 300x by sqrt(eps) on others.
    """
    norms = [m for m in wrapped.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for bn in norms:
            if bn.affine:
                bn.weight.copy_(torch.empty(bn.num_features).uniform_(0.5, 1.5, generator=generator))
                bn.bias.copy_(0.1 * torch.randn(bn.num_features, generator=generator))
            bn.reset_running_stats()
            bn.momentum = None  # a cumulative average over the passes
        example = _examples(entry, seed)
        wrapped.train()
        for _ in range(passes):
            wrapped(example + 0.1 * torch.randn(example.shape, generator=generator))
        for bn in norms:
            _perturb(bn, generator)
            bn.momentum = 0.1


def _examples(entry: Arch, seed: int) -> torch.Tensor:
    (spec,) = entry.inputs  # every BatchNorm model here takes one float input
    if len(spec.shape) == 4:
        return _images(spec.shape[1], spec.shape[2], seed)
    return torch.rand((6, *spec.shape[1:]), generator=torch.Generator().manual_seed(seed)) * 2 - 1


def _perturb(bn: nn.modules.batchnorm._BatchNorm, generator: torch.Generator) -> None:
    size = bn.num_features
    var = bn.running_var.clamp(min=0.01 * float(bn.running_var.mean()))
    bn.running_mean.add_(0.1 * var.sqrt() * torch.randn(size, generator=generator))
    bn.running_var.copy_(var * torch.empty(size).uniform_(0.5, 1.5, generator=generator))


def _mae_noise(size: int, patch: int) -> dict:
    """ViT-MAE shuffles patches by argsort of random noise; fixed noise makes the model a function of its input."""
    count = (size // patch) ** 2
    return {"noise": torch.linspace(0, 1, count).unsqueeze(0)}


def _backbone(config_class: type, **kwargs) -> tf.PretrainedConfig:
    return config_class(out_features=["stage1", "stage2", "stage3", "stage4"], **kwargs)


A = Arch
_ENTRIES: list[Arch] = [
    # CNNs
    A("resnet18", "cnn", "ResNet-18 layout (basic blocks): depths [2, 2, 2, 2], widths 16-128 (64-512), 64x64 input.",
      lambda: tf.ResNetConfig(layer_type="basic", depths=[2, 2, 2, 2], embedding_size=16, hidden_sizes=[16, 32, 64, 128],
                              num_labels=10), tf.ResNetForImageClassification, image(64)),
    A("convnext", "cnn", "ConvNeXt: depths [1, 1, 2, 1], widths 16-128, 64x64 input; layer scale 0.1 (1e-6).",
      lambda: tf.ConvNextConfig(**STAGES4, layer_scale_init_value=LAYER_SCALE, num_labels=10),
      tf.ConvNextForImageClassification, image(64)),
    A("convnextv2", "cnn", "ConvNeXt V2 (global response norm): depths [1, 1, 2, 1], widths 16-128, 64x64 input.",
      lambda: tf.ConvNextV2Config(**STAGES4, num_labels=10), tf.ConvNextV2ForImageClassification, image(64)),
    A("regnet_x", "cnn", "RegNetX (grouped convs, group width 8): depths [1, 1, 2, 1], widths 16-128, 64x64 input.",
      lambda: tf.RegNetConfig(layer_type="x", embedding_size=16, groups_width=8, **STAGES4, num_labels=10),
      tf.RegNetForImageClassification, image(64)),
    A("efficientnet", "cnn", "EfficientNet (MBConv, squeeze-excitation): width 0.5, depth 0.5, 64x64 input; fan-in init "
      "and a global-mean pooler as in configs/zoo/efficientnet_b0.yaml.",
      lambda: tf.EfficientNetConfig(image_size=64, width_coefficient=0.5, depth_coefficient=0.5, hidden_dim=640,
                                    num_labels=10), tf.EfficientNetForImageClassification, image(64),
      prepare=_prepare_efficientnet),
    A("mobilenet_v1", "cnn", "MobileNetV1 0.25 with TF 'SAME' padding, 64x64 input.",
      lambda: tf.MobileNetV1Config(image_size=64, depth_multiplier=0.25, tf_padding=True, num_labels=10),
      tf.MobileNetV1ForImageClassification, image(64)),
    A("mobilenet_v2", "cnn", "MobileNetV2 0.35 with TF 'SAME' padding, 64x64 input.",
      lambda: tf.MobileNetV2Config(image_size=64, depth_multiplier=0.35, tf_padding=True, num_labels=10),
      tf.MobileNetV2ForImageClassification, image(64)),
    A("bit", "cnn", "BiT (weight-standardised convs, GroupNorm, 'SAME' padding): depths [1, 1, 1, 1], widths 32-256, 8 "
      "groups, 64x64 input.",
      lambda: tf.BitConfig(embedding_size=32, hidden_sizes=[32, 64, 128, 256], depths=[1, 1, 1, 1], num_groups=8,
                           global_padding="SAME", embedding_dynamic_padding=True, num_labels=10),
      tf.BitForImageClassification, image(64)),
    A("poolformer", "cnn", "PoolFormer (average-pool token mixer, GroupNorm): depths [1, 1, 1, 1], widths 16-128, 64x64 "
      "input; layer scale 0.1 (1e-5).",
      lambda: tf.PoolFormerConfig(depths=[1, 1, 1, 1], hidden_sizes=[16, 32, 64, 128], layer_scale_init_value=LAYER_SCALE,
                                  num_labels=10), tf.PoolFormerForImageClassification, image(64)),
    # CNN-transformer hybrids
    A("mobilevit", "hybrid", "MobileViT (XXS widths), 64x64 input.",
      lambda: tf.MobileViTConfig(image_size=64, hidden_sizes=[64, 80, 96], neck_hidden_sizes=[16, 16, 24, 48, 64, 80, 320],
                                 expand_ratio=2.0, num_labels=10), tf.MobileViTForImageClassification, image(64)),
    A("mobilevitv2", "hybrid", "MobileViTV2 (separable linear attention), width 0.5, 64x64 input.",
      lambda: tf.MobileViTV2Config(image_size=64, width_multiplier=0.5, num_labels=10),
      tf.MobileViTV2ForImageClassification, image(64)),
    A("levit", "hybrid", "LeViT (attention with learned position biases, BatchNorm everywhere): widths 32-96, depths "
      "[1, 1, 1], 64x64 input.",
      lambda: tf.LevitConfig(image_size=64, hidden_sizes=[32, 64, 96], num_attention_heads=[2, 2, 2], depths=[1, 1, 1],
                             key_dim=[8, 8, 8], num_labels=10), tf.LevitForImageClassification, image(64)),
    A("cvt", "hybrid", "CvT (convolutional projections with BatchNorm): widths 16-64, depths [1, 2, 3] (HF indexes "
      "stage i's drop-path rates by i: a stage needs more than i layers), 64x64 input.",
      lambda: tf.CvtConfig(embed_dim=[16, 32, 64], num_heads=[1, 2, 2], depth=[1, 2, 3], drop_path_rate=[0.0] * 3, num_labels=10,
                           initializer_range=INIT_RANGE), tf.CvtForImageClassification, image(64)),
    A("swiftformer", "hybrid", "SwiftFormer (efficient additive attention): depths [1, 1, 1, 1], widths 16-128, 64x64 "
      "input; layer scale 0.1 (1e-5).",
      lambda: tf.SwiftFormerConfig(depths=[1, 1, 1, 1], embed_dims=[16, 32, 64, 128], layer_scale_init_value=LAYER_SCALE,
                                   num_labels=10), tf.SwiftFormerForImageClassification, image(64)),
    A("pvt_v2", "hybrid", "PVTv2 (spatial-reduction attention, depthwise-conv MLP): widths 16-128, depths [1, 1, 1, 1], "
      "64x64 input.",
      lambda: tf.PvtV2Config(hidden_sizes=[16, 32, 64, 128], depths=[1, 1, 1, 1], num_attention_heads=[1, 1, 2, 4],
                             initializer_range=INIT_RANGE, num_labels=10), tf.PvtV2ForImageClassification, image(64)),
    # vision transformers
    A("vit", "vit", "ViT: patch 4, hidden 64, 2 layers, 2 heads, 32x32 input.",
      lambda: tf.ViTConfig(**VIT, num_labels=10), tf.ViTForImageClassification, image(32)),
    A("deit", "vit", "DeiT: patch 4, hidden 64, 2 layers, 2 heads, 32x32 input.",
      lambda: tf.DeiTConfig(**VIT, num_labels=10), tf.DeiTForImageClassification, image(32)),
    A("beit", "vit", "BEiT (relative position bias, layer scale 0.1): patch 4, hidden 64, 2 layers, 32x32 input; HF's "
      "LayerNorm eps 1e-12.",
      lambda: tf.BeitConfig(**VIT, use_relative_position_bias=True, num_labels=10), tf.BeitForImageClassification,
      image(32)),
    A("data2vec_vision", "vit", "Data2Vec-Vision (BEiT layout, shared relative position bias): patch 4, hidden 64, 2 "
      "layers, 32x32 input.",
      lambda: tf.Data2VecVisionConfig(**VIT, use_shared_relative_position_bias=True, num_labels=10),
      tf.Data2VecVisionForImageClassification, image(32)),
    A("dinov2", "vit", "DINOv2 (layer scale 1.0): patch 4, hidden 64, 2 layers, 32x32 input.",
      lambda: tf.Dinov2Config(**VIT, num_labels=10), tf.Dinov2ForImageClassification, image(32)),
    A("vit_mae", "vit", "ViT-MAE encoder, mask ratio 0 and fixed shuffle noise (patches gathered by argsort): patch 4, "
      "hidden 64, 2 layers, 32x32 input; returns the last hidden state.",
      lambda: tf.ViTMAEConfig(**VIT, mask_ratio=0.0), tf.ViTMAEModel, image(32), outputs=("last_hidden_state",),
      fixed=_mae_noise(32, 4)),
    A("swin", "vit", "Swin (shifted-window attention): patch 2, window 4, widths 16-64, depths [1, 1, 2], 32x32 input.",
      lambda: tf.SwinConfig(image_size=32, patch_size=2, window_size=4, embed_dim=16, depths=[1, 1, 2], num_heads=[1, 2, 4],
                            initializer_range=INIT_RANGE, num_labels=10), tf.SwinForImageClassification, image(32)),
    A("swinv2", "vit", "Swin V2 (scaled cosine attention, log-spaced continuous position bias): patch 2, window 4, widths "
      "16-64, depths [1, 1, 2], 32x32 input.",
      lambda: tf.Swinv2Config(image_size=32, patch_size=2, window_size=4, embed_dim=16, depths=[1, 1, 2],
                              num_heads=[1, 2, 4], initializer_range=INIT_RANGE, num_labels=10),
      tf.Swinv2ForImageClassification, image(32)),
    A("hiera", "vit", "Hiera (mask-unit attention, query pooling): widths 16-128, depths [1, 1, 1, 1], 64x64 input.",
      lambda: tf.HieraConfig(embed_dim=16, image_size=[64, 64], depths=[1, 1, 1, 1], num_heads=[1, 2, 4, 8],
                             masked_unit_size=[8, 8], initializer_range=INIT_RANGE, num_labels=10),
      tf.HieraForImageClassification, image(64)),
    A("focalnet", "vit", "FocalNet (focal modulation): widths 16-128, depths [1, 1, 1, 1], 32x32 input.",
      lambda: tf.FocalNetConfig(image_size=32, embed_dim=16, hidden_sizes=[32, 64, 128, 128], depths=[1, 1, 1, 1],
                                initializer_range=INIT_RANGE, num_labels=10), tf.FocalNetForImageClassification, image(32)),
    # dense heads
    A("segformer", "dense", "SegFormer semantic segmentation (MiT-b0 layout at widths 16-128, depths [1, 1, 1, 1]), "
      "64x64 input, 5 classes; logits at 1/4 resolution.",
      lambda: tf.SegformerConfig(hidden_sizes=[16, 32, 64, 128], depths=[1, 1, 1, 1], num_attention_heads=[1, 1, 2, 4],
                                 decoder_hidden_size=32, initializer_range=INIT_RANGE, num_labels=5),
      tf.SegformerForSemanticSegmentation, image(64)),
    A("dpt_depth", "dense", "DPT depth estimation (ViT backbone, reassemble and fusion necks): patch 4, hidden 32, 4 "
      "layers, 32x32 input; returns the predicted depth.",
      lambda: tf.DPTConfig(image_size=32, patch_size=4, hidden_size=32, num_hidden_layers=4, num_attention_heads=2,
                           intermediate_size=64, backbone_out_indices=[0, 1, 2, 3], neck_hidden_sizes=[16, 32, 64, 64],
                           fusion_hidden_size=32, initializer_range=INIT_RANGE, attn_implementation=ATTENTION),
      tf.DPTForDepthEstimation, image(32), outputs=("predicted_depth",)),
    A("dpt_segmentation", "dense", "DPT semantic segmentation (BatchNorm head): patch 4, hidden 32, 4 layers, 32x32 "
      "input, 5 classes.",
      lambda: tf.DPTConfig(image_size=32, patch_size=4, hidden_size=32, num_hidden_layers=4, num_attention_heads=2,
                           intermediate_size=64, backbone_out_indices=[0, 1, 2, 3], neck_hidden_sizes=[16, 32, 64, 64],
                           fusion_hidden_size=32, use_auxiliary_head=False, initializer_range=INIT_RANGE, num_labels=5,
                           attn_implementation=ATTENTION),
      tf.DPTForSemanticSegmentation, image(32)),
    A("glpn", "dense", "GLPN depth estimation (MiT encoder, selective feature fusion): widths 16-128, depths [1, 1, 1, 1], "
      "64x64 input; returns the predicted depth.",
      lambda: tf.GLPNConfig(hidden_sizes=[16, 32, 64, 128], depths=[1, 1, 1, 1], num_attention_heads=[1, 1, 2, 4],
                            decoder_hidden_size=32, initializer_range=INIT_RANGE),
      tf.GLPNForDepthEstimation, image(64), outputs=("predicted_depth",)),
    A("yolos", "dense", "YOLOS detection (ViT with 10 detection tokens): patch 4, hidden 64, 2 layers, 32x32 input; "
      "returns class logits and boxes.",
      lambda: tf.YolosConfig(**{**VIT, "image_size": [32, 32]}, num_detection_tokens=10, num_labels=5),
      tf.YolosForObjectDetection, image(32), outputs=("logits", "pred_boxes")),
    A("upernet_convnext", "dense", "UperNet segmentation (pyramid pooling, BatchNorm) on a ConvNeXt backbone (widths "
      "16-128, depths [1, 1, 1, 1]), 64x64 input, 5 classes.",
      lambda: tf.UperNetConfig(backbone_config=_backbone(tf.ConvNextConfig, hidden_sizes=[16, 32, 64, 128],
                                                         depths=[1, 1, 1, 1], layer_scale_init_value=LAYER_SCALE),
                               hidden_size=32, use_auxiliary_head=False, num_labels=5),
      tf.UperNetForSemanticSegmentation, image(64)),
    # text encoders
    A("bert", "text", "BERT: hidden 64, 2 layers, 2 heads, vocabulary 256, 32 tokens.",
      lambda: tf.BertConfig(**TEXT, num_labels=4), tf.BertForSequenceClassification, tokens()),
    A("roberta", "text", "RoBERTa (position ids from the padding index): hidden 64, 2 layers, vocabulary 256, 32 tokens.",
      lambda: tf.RobertaConfig(**TEXT, num_labels=4), tf.RobertaForSequenceClassification, tokens()),
    A("xlm_roberta", "text", "XLM-RoBERTa: hidden 64, 2 layers, vocabulary 256, 32 tokens.",
      lambda: tf.XLMRobertaConfig(**TEXT, num_labels=4), tf.XLMRobertaForSequenceClassification, tokens()),
    A("distilbert", "text", "DistilBERT: dim 64, 2 layers, 2 heads, vocabulary 256, 32 tokens.",
      lambda: tf.DistilBertConfig(vocab_size=VOCAB, dim=64, n_layers=2, n_heads=2, hidden_dim=128,
                                  max_position_embeddings=64, initializer_range=INIT_RANGE, num_labels=4,
                                  attn_implementation=ATTENTION), tf.DistilBertForSequenceClassification, tokens()),
    A("albert", "text", "ALBERT (factorised embeddings 32, shared layers): hidden 64, 2 layers, vocabulary 256, 32 tokens.",
      lambda: tf.AlbertConfig(**TEXT, embedding_size=32, num_labels=4), tf.AlbertForSequenceClassification, tokens()),
    A("electra", "text", "ELECTRA discriminator (embeddings 32 projected to 64): 2 layers, vocabulary 256, 32 tokens.",
      lambda: tf.ElectraConfig(**TEXT, embedding_size=32, num_labels=4), tf.ElectraForSequenceClassification, tokens()),
    A("deberta_v2", "text", "DeBERTa-v2 (disentangled relative attention, log buckets): hidden 64, 2 layers, vocabulary "
      "256, 32 tokens.",
      lambda: tf.DebertaV2Config(**TEXT, relative_attention=True, position_buckets=16, pos_att_type=["p2c", "c2p"],
                                 num_labels=4), tf.DebertaV2ForSequenceClassification, tokens()),
    A("mpnet", "text", "MPNet (relative position buckets): hidden 64, 2 layers, vocabulary 256, 32 tokens.",
      lambda: tf.MPNetConfig(**TEXT, num_labels=4), tf.MPNetForSequenceClassification, tokens()),
    # decoder-only language models: logits for every position, no cache
    A("gpt2", "decoder", "GPT-2: 64 wide, 2 layers, 4 heads, vocabulary 256, 32 tokens; logits, no cache.",
      lambda: tf.GPT2Config(vocab_size=VOCAB, n_embd=64, n_layer=2, n_head=4, n_positions=64, initializer_range=INIT_RANGE,
                            bos_token_id=0, eos_token_id=0,
                            use_cache=False, attn_implementation=ATTENTION), tf.GPT2LMHeadModel, tokens(mask=False)),
    A("opt", "decoder", "OPT: hidden 64, 2 layers, 4 heads, vocabulary 256, 32 tokens; logits, no cache.",
      lambda: tf.OPTConfig(vocab_size=VOCAB, hidden_size=64, num_hidden_layers=2, num_attention_heads=4, ffn_dim=128,
                           word_embed_proj_dim=64, max_position_embeddings=64, init_std=INIT_RANGE, use_cache=False,
                           attn_implementation=ATTENTION), tf.OPTForCausalLM, tokens(mask=False)),
    A("llama", "decoder", "LLaMA (RMSNorm, rotary, SwiGLU, grouped KV heads 2): hidden 64, 2 layers, vocabulary 256, 32 "
      "tokens; logits, no cache.",
      lambda: tf.LlamaConfig(**DECODER, num_key_value_heads=2), tf.LlamaForCausalLM, tokens(mask=False)),
    A("mistral", "decoder", "Mistral (sliding window 16): hidden 64, 2 layers, vocabulary 256, 32 tokens; logits, no cache.",
      lambda: tf.MistralConfig(**DECODER, num_key_value_heads=2, sliding_window=16), tf.MistralForCausalLM,
      tokens(mask=False)),
    A("qwen2", "decoder", "Qwen2 (QKV biases): hidden 64, 2 layers, vocabulary 256, 32 tokens; logits, no cache.",
      lambda: tf.Qwen2Config(**DECODER, num_key_value_heads=2), tf.Qwen2ForCausalLM, tokens(mask=False)),
    A("phi", "decoder", "Phi (partial rotary, parallel attention and MLP): hidden 64, 2 layers, vocabulary 256, 32 "
      "tokens; logits, no cache.",
      lambda: tf.PhiConfig(**DECODER), tf.PhiForCausalLM, tokens(mask=False)),
    A("gpt_neox", "decoder", "GPT-NeoX (parallel residual, partial rotary): hidden 64, 2 layers, vocabulary 256, 32 "
      "tokens; logits, no cache.",
      lambda: tf.GPTNeoXConfig(**DECODER), tf.GPTNeoXForCausalLM, tokens(mask=False)),
    A("gemma", "decoder", "Gemma (RMSNorm with 1 + weight, GeGLU, scaled embeddings): hidden 64, head 16, 2 layers, "
      "vocabulary 256, 32 tokens; logits, no cache.",
      lambda: tf.GemmaConfig(**DECODER, num_key_value_heads=1, head_dim=16), tf.GemmaForCausalLM, tokens(mask=False)),
    A("bloom", "decoder", "BLOOM (ALiBi position biases): hidden 64, 2 layers, 4 heads, vocabulary 256, 32 tokens; "
      "logits, no cache.",
      lambda: tf.BloomConfig(vocab_size=VOCAB, hidden_size=64, n_layer=2, n_head=4, initializer_range=INIT_RANGE,
                             use_cache=False, attn_implementation=ATTENTION), tf.BloomForCausalLM, tokens(mask=False)),
    # audio
    A("wav2vec2", "audio", "wav2vec 2.0 (conv feature encoder with GroupNorm, weight-normed grouped positional conv): "
      "hidden 64, 2 layers, conv widths 32, 4000 samples; classification logits.",
      lambda: tf.Wav2Vec2Config(**AUDIO, num_labels=4), tf.Wav2Vec2ForSequenceClassification, waveform()),
    A("hubert", "audio", "HuBERT: hidden 64, 2 layers, conv widths 32, 4000 samples; classification logits.",
      lambda: tf.HubertConfig(**AUDIO, num_labels=4), tf.HubertForSequenceClassification, waveform()),
    A("wavlm", "audio", "WavLM (gated relative position bias): hidden 64, 2 layers, conv widths 32, 4000 samples; "
      "classification logits.",
      lambda: tf.WavLMConfig(**AUDIO, num_buckets=32, max_bucket_distance=64, num_labels=4),
      tf.WavLMForSequenceClassification, waveform()),
    A("data2vec_audio", "audio", "Data2Vec-Audio (LayerNorm feature encoder, 5 positional convs): hidden 64, 2 layers, "
      "conv widths 32, 4000 samples; classification logits.",
      lambda: tf.Data2VecAudioConfig(**{**AUDIO, "num_conv_pos_embeddings": 5}, num_labels=4),
      tf.Data2VecAudioForSequenceClassification, waveform()),
    A("ast", "audio", "Audio Spectrogram Transformer: 64 frames x 32 mel bins, patch 16 (stride 10), hidden 64, 2 layers; "
      "classification logits.",
      lambda: tf.ASTConfig(hidden_size=64, num_hidden_layers=2, num_attention_heads=2, intermediate_size=128, max_length=64,
                           num_mel_bins=32, initializer_range=INIT_RANGE, num_labels=4, attn_implementation=ATTENTION),
      tf.ASTForAudioClassification, (Input("input_values", (1, 64, 32)),)),
    A("whisper_encoder", "audio", "Whisper encoder with a classification head: d_model 64, 2 layers, 16 mel bins x 100 "
      "frames (50 positions); classification logits.",
      lambda: tf.WhisperConfig(d_model=64, encoder_layers=2, encoder_attention_heads=2, encoder_ffn_dim=128,
                               decoder_layers=1, decoder_attention_heads=2, decoder_ffn_dim=128, num_mel_bins=16,
                               max_source_positions=50, vocab_size=VOCAB, pad_token_id=0, bos_token_id=0,
                               eos_token_id=0, decoder_start_token_id=1, begin_suppress_tokens=None, init_std=INIT_RANGE,
                               use_cache=False, num_labels=4, attn_implementation=ATTENTION),
      tf.WhisperForAudioClassification, (Input("input_features", (1, 16, 100)),)),
]
ARCHS: dict[str, Arch] = {entry.name: entry for entry in _ENTRIES}
FAMILIES = ("cnn", "hybrid", "vit", "dense", "text", "decoder", "audio")


def config_yaml(entry: Arch) -> str:
    """The configs/zoo_wide/<name>.yaml text for one entry (comment, factory, inputs)."""
    lines = [f"# {line}" for line in _wrap(f"{entry.summary} Family: {entry.family}. Built by "
                                             f"pipeline/zoo/wide.py (generated; do not edit).")]
    lines += [f"name: {entry.name}", "model: pipeline.zoo.wide:build", "model_args:", f"  arch: {entry.name}", "inputs:"]
    for spec in entry.inputs:
        lines += [f"  - name: {spec.name}", f"    shape: [{', '.join(str(d) for d in spec.shape)}]",
                  f"    dtype: {spec.dtype}", f"    low: {_number(spec.low, spec.dtype)}",
                  f"    high: {_number(spec.high, spec.dtype)}"]
    if len(entry.outputs) > 1:
        lines += [f"outputs: [{', '.join(entry.outputs)}]"]
    return "\n".join(lines) + "\n"


def _number(value: float, dtype: str) -> str:
    return str(int(value)) if dtype.startswith("int") else str(float(value))


def _wrap(text: str, width: int = 98) -> list[str]:
    lines, line = [], ""
    for word in text.split():
        if line and len(line) + 1 + len(word) > width:
            lines.append(line)
            line = word
        else:
            line = f"{line} {word}" if line else word
    return lines + [line]


def write_configs(folder: Path) -> list[Path]:
    """Write every entry's config into `folder`, and remove configs of entries no longer in the table."""
    folder.mkdir(parents=True, exist_ok=True)
    for stale in folder.glob("*.yaml"):
        if stale.stem not in ARCHS:
            stale.unlink()
    paths = [folder / f"{entry.name}.yaml" for entry in _ENTRIES]
    for entry, path in zip(_ENTRIES, paths):
        path.write_text(config_yaml(entry))
    return paths


if __name__ == "__main__":
    written = write_configs(Path(sys.argv[1] if len(sys.argv) > 1 else "configs/zoo_wide"))
    print(f"wrote {len(written)} configs")
