"""pipeline/lint/rules/norm_epsilon.py: LayerNorm, GroupNorm and InstanceNorm epsilon against their modules."""
from __future__ import annotations

import pytest
import torch
from onnx import TensorProto, helper
from torch import nn

from pipeline.lint.rules import norm_epsilon
from pipeline.lint.context import LintContext
from tests.lint.exports import EXPORTERS, errors, export, export_all, lint, load, nodes, only_node, set_attribute

X = torch.rand(1, 4, 8, 8, generator=torch.Generator().manual_seed(1))


class NormNet(nn.Module):
    """Non-default eps everywhere: LayerNorm(1e-6) over the last axis, GroupNorm(1e-4), InstanceNorm2d(1e-3)."""

    def __init__(self) -> None:
        super().__init__()
        self.embed = nn.Conv2d(4, 8, 1)
        self.blocks = nn.Sequential(nn.LayerNorm(8, eps=1e-6), nn.GroupNorm(2, 8, eps=1e-4))
        self.head = nn.InstanceNorm2d(8, eps=1e-3, affine=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.blocks(self.embed(x)))


@pytest.fixture(scope="module")
def net() -> NormNet:
    torch.manual_seed(0)
    model = NormNet().eval()
    with torch.no_grad():  # trained-looking affine parameters, distinct per module
        for module in (model.blocks[0], model.blocks[1], model.head):
            module.weight.uniform_(0.5, 1.5)
            module.bias.normal_(0.0, 0.1)
    return model


@pytest.fixture(scope="module")
def files(net, tmp_path_factory):
    return export_all(net, (X,), tmp_path_factory.mktemp("norm"))


def check(model, torch_model) -> list:
    return list(norm_epsilon.check(LintContext(model, torch_model, (X,))))


def group_norm_node(model):
    """GroupNorm is exported as Reshape + InstanceNormalization, before the head's InstanceNormalization."""
    return nodes(model, "InstanceNormalization")[0]


@pytest.mark.parametrize("exporter", EXPORTERS)
def test_correct_export_has_no_finding(files, net, exporter):
    model = load(files[exporter])
    assert len(nodes(model, "InstanceNormalization")) == 2  # premise: GroupNorm and InstanceNorm2d
    assert check(model, net) == []
    assert errors(lint(model, net, (X,))) == []


@pytest.mark.parametrize("exporter", EXPORTERS)
def test_changed_layer_norm_epsilon_is_an_error(files, net, exporter):
    model = load(files[exporter])
    node = only_node(model, "LayerNormalization")
    set_attribute(node, "epsilon", 1e-5)

    (finding,) = check(model, net)

    assert (finding.severity, finding.node, finding.module) == ("error", node.name, "blocks.0")
    assert (finding.expected, finding.actual) == ("1e-06", "1e-05")
    assert "epsilon is 1e-05 (PyTorch's default) but LayerNorm blocks.0 uses eps=1e-06" in finding.message


@pytest.mark.parametrize("exporter", EXPORTERS)
def test_changed_group_norm_epsilon_is_an_error(files, net, exporter):
    model = load(files[exporter])
    node = group_norm_node(model)
    set_attribute(node, "epsilon", 1e-3)

    (finding,) = check(model, net)

    assert (finding.severity, finding.node, finding.op_type, finding.module) == (
        "error", node.name, "InstanceNormalization", "blocks.1")
    assert "epsilon is 0.001 (Keras/TensorFlow's default) but GroupNorm blocks.1 uses eps=0.0001" in finding.message


@pytest.mark.parametrize("exporter", EXPORTERS)
def test_changed_instance_norm_epsilon_is_an_error(files, net, exporter):
    model = load(files[exporter])
    node = model.graph.node[-1]
    assert node.op_type == "InstanceNormalization"  # premise: the head is the last node
    set_attribute(node, "epsilon", 1e-5)

    (finding,) = check(model, net)

    assert (finding.severity, finding.module, finding.expected) == ("error", "head", "0.001")
    assert "but InstanceNorm2d head uses eps=0.001" in finding.message


def test_group_normalization_node_is_checked_against_its_module(net):
    """Opset 18+ GroupNormalization (as other exporters write it) is checked like the others."""
    node = helper.make_node("GroupNormalization", ["x", "s", "b"], ["y"], name="/blocks/blocks.1/GroupNormalization",
                            epsilon=1e-5, num_groups=2)
    graph = helper.make_graph([node], "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 8, 8, 8])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 8, 8, 8])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 21)])

    (finding,) = check(model, net)

    assert (finding.severity, finding.module, finding.expected, finding.actual) == ("error", "blocks.1", "0.0001", "1e-05")


class ChannelsFirstLayerNorm(torch.nn.Module):
    """Like transformers' ConvNextLayerNorm: a LayerNorm look-alike with its own eps."""

    def __init__(self, channels: int, eps: float = 1e-6) -> None:
        super().__init__()
        self.weight = torch.nn.Parameter(torch.ones(channels))
        self.bias = torch.nn.Parameter(torch.zeros(channels))
        self.eps = eps

    def forward(self, x):
        x = x.permute(0, 2, 3, 1)
        x = torch.nn.functional.layer_norm(x, x.shape[-1:], self.weight, self.bias, self.eps)
        return x.permute(0, 3, 1, 2)


class LookAlikes(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = torch.nn.Conv2d(3, 8, 3, padding=1)
        self.norm = ChannelsFirstLayerNorm(8, eps=1e-6)
        self.final = torch.nn.LayerNorm(8, eps=1e-12)  # same fresh gamma/beta values, other eps

    def forward(self, x):
        return self.final(self.norm(self.conv(x)).mean(dim=(2, 3)))


def test_layernorm_look_alikes_with_fresh_equal_parameters_are_not_confused(tmp_path):
    """Fresh norms share gamma=1/beta=0: value matching must not pin one on another class's module."""
    model = LookAlikes().eval()
    args = (torch.rand(1, 3, 8, 8),)
    for exporter in ("dynamo", "torchscript"):
        onnx_model = load(export(model, args, tmp_path / f"{exporter}.onnx", exporter))
        assert errors(lint(onnx_model, model, args, rule="norm_epsilon")) == []
