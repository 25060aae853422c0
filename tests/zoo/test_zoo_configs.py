"""The model zoo (configs/zoo/*.yaml): each config loads, and its model builds and runs in PyTorch.

No conversion here: zoo conversions take a minute or more each and belong to `make bench`.
Marked slow: building the zoo imports transformers. The network is blocked: the models are
built from config classes and must never reach the hub.
"""
from __future__ import annotations

import pytest
import torch

from pipeline.config import CONFIGS_DIR, load_config
from pipeline.inputs import TensorSpec, feeds, generate
from pipeline.model.torch_model import build_model

pytestmark = pytest.mark.slow

ZOO = sorted((CONFIGS_DIR / "zoo").glob("*.yaml"))
EXPECTED = {"resnet50", "mobilenet_v1", "mobilenet_v2", "efficientnet_b0", "convnext_tiny", "regnet_y_400mf",
            "vit_small", "bert_small"}


def test_the_zoo_holds_every_architecture():
    assert {path.stem for path in ZOO} == EXPECTED


@pytest.mark.parametrize("path", ZOO, ids=lambda p: p.stem)
def test_zoo_model_builds_and_runs_on_its_configured_inputs(path, no_network):
    source = load_config(path)
    config = source.config
    assert source.name == path.stem
    assert config.model.startswith("pipeline.zoo.hf:")
    specs = [TensorSpec.from_config(s) for s in config.inputs]
    model = build_model(source)
    assert not model.training
    feed = feeds(generate(specs, 2, config.seed))
    with torch.no_grad():
        logits = [model(*[torch.from_numpy(sample[s.name]) for s in specs]) for sample in feed]
    batch = config.inputs[0].shape[0]
    assert all(isinstance(out, torch.Tensor) for out in logits), "forward must return the logits tensor alone"
    assert logits[0].ndim == 2 and logits[0].shape[0] == batch and logits[0].dtype == torch.float32
    assert all(torch.isfinite(out).all() for out in logits)
    assert not torch.equal(logits[0], logits[1]), "different inputs must give different logits"


@pytest.mark.parametrize("path", [p for p in ZOO if p.stem in ("resnet50", "bert_small")], ids=lambda p: p.stem)
def test_zoo_model_is_seeded(path, no_network):
    """Two builds give the same weights and BatchNorm statistics: runs are repeatable."""
    source = load_config(path)
    first, second = build_model(source).state_dict(), build_model(source).state_dict()
    assert first.keys() == second.keys()
    assert all(torch.equal(first[k], second[k]) for k in first)
