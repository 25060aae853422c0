"""pipeline/lint/rules/pool_attrs.py: ceil_mode, count_include_pad, dilations and strides against the module."""
from __future__ import annotations

import pytest
import torch
from torch import nn

from pipeline.lint.rules import pool_attrs
from pipeline.lint.context import LintContext
from tests.lint.exports import (EXPORTERS, attribute, errors, export_all, lint, load, only_node, remove_attribute,
                                set_attribute)

X = torch.rand(1, 4, 13, 13, generator=torch.Generator().manual_seed(1))  # odd size: ceil_mode changes the shape


class Pools(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.max = nn.MaxPool2d(3, 2, padding=1, ceil_mode=True)
        self.avg = nn.AvgPool2d(3, 2, padding=1, count_include_pad=False)
        self.dilated = nn.Conv2d(4, 4, 3, dilation=2, padding=2)
        self.plain_avg = nn.AvgPool2d(2)  # count_include_pad=True, PyTorch's default (ONNX's is 0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.plain_avg(self.dilated(self.avg(self.max(x))))


@pytest.fixture(scope="module")
def net() -> Pools:
    torch.manual_seed(0)
    return Pools().eval()


@pytest.fixture(scope="module")
def files(net, tmp_path_factory):
    return export_all(net, (X,), tmp_path_factory.mktemp("pool_attrs"))


def check(model, torch_model) -> list:
    return list(pool_attrs.check(LintContext(model, torch_model, (X,))))


def average_pools(model):
    first, second = [n for n in model.graph.node if n.op_type == "AveragePool"]
    return first, second


@pytest.mark.parametrize("exporter", EXPORTERS)
def test_correct_export_has_no_finding(files, net, exporter):
    model = load(files[exporter])
    assert attribute(only_node(model, "MaxPool"), "ceil_mode") == 1  # premise
    assert check(model, net) == []
    assert errors(lint(model, net, (X,))) == []


@pytest.mark.parametrize("exporter", EXPORTERS)
def test_changed_ceil_mode_is_an_error(files, net, exporter):
    model = load(files[exporter])
    node = only_node(model, "MaxPool")
    set_attribute(node, "ceil_mode", 0)

    (finding,) = check(model, net)

    assert (finding.rule, finding.severity, finding.node, finding.module) == ("pool_attrs", "error", node.name, "max")
    assert (finding.expected, finding.actual) == ("1", "0")
    assert finding.message == "ceil_mode is 0 but max uses 1: re-export, or set ceil_mode=1"


def test_absent_ceil_mode_means_onnx_default_0(files, net):
    model = load(files["torchscript"])
    remove_attribute(only_node(model, "MaxPool"), "ceil_mode")
    (finding,) = check(model, net)
    assert (finding.module, finding.actual) == ("max", "0")


@pytest.mark.parametrize("exporter", EXPORTERS)
def test_changed_count_include_pad_is_an_error(files, net, exporter):
    model = load(files[exporter])
    node, _ = average_pools(model)
    set_attribute(node, "count_include_pad", 1)

    (finding,) = check(model, net)

    assert (finding.severity, finding.node, finding.module, finding.expected, finding.actual) == (
        "error", node.name, "avg", "0", "1")
    assert finding.message.startswith("count_include_pad is 1 but avg uses 0")


def test_absent_count_include_pad_is_an_error_when_the_module_includes_padding(files, net):
    """ONNX defaults count_include_pad to 0 and PyTorch to True: dropping the attribute changes numbers."""
    model = load(files["torchscript"])
    _, plain = average_pools(model)
    remove_attribute(plain, "count_include_pad")

    (finding,) = check(model, net)

    assert (finding.module, finding.expected, finding.actual) == ("plain_avg", "1", "0")


@pytest.mark.parametrize("exporter", EXPORTERS)
def test_changed_conv_dilations_are_an_error(files, net, exporter):
    model = load(files[exporter])
    node = only_node(model, "Conv")
    set_attribute(node, "dilations", [1, 1])

    (finding,) = check(model, net)

    assert (finding.severity, finding.op_type, finding.module, finding.expected, finding.actual) == (
        "error", "Conv", "dilated", "[2, 2]", "[1, 1]")
    assert finding.message == "dilations is [1, 1] but dilated uses [2, 2]: re-export, or set dilations=[2, 2]"


@pytest.mark.parametrize("exporter", EXPORTERS)
def test_changed_strides_are_an_error(files, net, exporter):
    model = load(files[exporter])
    set_attribute(only_node(model, "MaxPool"), "strides", [1, 1])
    (finding,) = check(model, net)
    assert (finding.module, finding.expected, finding.actual) == ("max", "[2, 2]", "[1, 1]")


def test_nothing_is_checked_without_a_pytorch_model(files):
    model = load(files["dynamo"])
    set_attribute(only_node(model, "MaxPool"), "ceil_mode", 0)
    assert list(pool_attrs.check(LintContext(model))) == []


class Adaptive(nn.Module):
    """UperNet's pyramid pooling: AdaptiveAvgPool2d exports as an AveragePool whose kernel and stride come from
    the input's size; the module has no `stride` to compare (it was an AttributeError that ended the run)."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(4, 4, 1)
        self.pool = nn.AdaptiveAvgPool2d((2, 2))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.pool(self.conv(x))


def test_an_adaptive_pool_is_not_compared_and_says_so(tmp_path):
    torch.manual_seed(0)
    net, x = Adaptive().eval(), torch.rand(1, 4, 12, 12)
    model = load(export_all(net, (x,), tmp_path, exporters=("torchscript",))["torchscript"])
    assert [n.op_type for n in model.graph.node if n.op_type == "AveragePool"] == ["AveragePool"]  # premise
    findings = list(pool_attrs.check(LintContext(model, net, (x,))))
    assert [(f.severity, f.module) for f in findings] == [("info", "pool")]
    assert "AdaptiveAvgPool2d sets them from the input's size" in findings[0].message
