"""pipeline/lint/rules/pad_op.py: Pad nodes' mode, constant value and amounts against the padding module."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from pipeline.lint.rules import pad_op
from pipeline.lint.context import LintContext
from tests.lint.exports import attribute, errors, export, initializer, lint, load, nodes, set_attribute, set_initializer

X = torch.rand(1, 2, 6, 6, generator=torch.Generator().manual_seed(1))


class Pads(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.reflect = nn.ReflectionPad2d((1, 2, 0, 1))
        self.replicate = nn.ReplicationPad2d(1)
        self.constant = nn.ConstantPad2d((1, 0, 2, 0), 0.5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.constant(self.replicate(self.reflect(x)))


@pytest.fixture(scope="module")
def net() -> Pads:
    return Pads().eval()


@pytest.fixture(scope="module")
def dynamo_file(net, tmp_path_factory):
    return export(net, (X,), tmp_path_factory.mktemp("pad_op") / "dynamo.onnx", "dynamo")


def check(model, torch_model) -> list:
    return list(pad_op.check(LintContext(model, torch_model, (X,))))


def pad_nodes(model) -> dict:
    """Pad nodes by the mode the exporter wrote: reflect, edge and constant, one each."""
    return {attribute(n, "mode").decode(): n for n in nodes(model, "Pad")}


def test_correct_dynamo_export_has_no_finding(dynamo_file, net):
    model = load(dynamo_file)
    assert sorted(pad_nodes(model)) == ["constant", "edge", "reflect"]  # premise
    assert check(model, net) == []
    assert errors(lint(model, net, (X,))) == []


def test_torchscript_pads_computed_at_run_time_are_a_note_not_an_error(net, tmp_path):
    model = load(export(net, (X,), tmp_path / "torchscript.onnx", "torchscript"))

    findings = check(model, net)

    assert [(f.severity, f.module) for f in findings] == [("info", "reflect"), ("info", "replicate"), ("info", "constant")]
    assert all(f.actual == "computed at run time" for f in findings)


@pytest.mark.parametrize("mode, module, expected", [("reflect", "reflect", "reflect"), ("edge", "replicate", "edge")])
def test_mode_changed_to_constant_is_an_error(dynamo_file, net, mode, module, expected):
    model = load(dynamo_file)
    node = pad_nodes(model)[mode]
    set_attribute(node, "mode", "constant")

    (finding,) = check(model, net)

    assert (finding.rule, finding.severity, finding.node, finding.module) == ("pad_op", "error", node.name, module)
    assert (finding.expected, finding.actual) == (expected, "constant")
    assert finding.message.startswith(f"Pad mode is 'constant' but {module} is ")


def test_constant_pad_changed_to_reflect_is_an_error(dynamo_file, net):
    model = load(dynamo_file)
    set_attribute(pad_nodes(model)["constant"], "mode", "reflect")
    (finding,) = check(model, net)
    assert (finding.module, finding.expected, finding.actual) == ("constant", "constant", "reflect")


@pytest.mark.parametrize("value", [0.0, 0.25, -0.5])
def test_changed_constant_value_is_an_error(dynamo_file, net, value):
    model = load(dynamo_file)
    node = pad_nodes(model)["constant"]
    assert initializer(model, node.input[2]).item() == 0.5  # premise
    set_initializer(model, node.input[2], np.array(value))

    (finding,) = check(model, net)

    assert (finding.severity, finding.node, finding.module, finding.expected, finding.actual) == (
        "error", node.name, "constant", "0.5", f"{value:g}")
    assert finding.message == "Pad constant value differs from constant.value=0.5: re-export"


def test_missing_constant_value_means_zero_and_is_an_error(dynamo_file, net):
    model = load(dynamo_file)
    node = pad_nodes(model)["constant"]
    del node.input[2]
    (finding,) = check(model, net)
    assert (finding.module, finding.actual) == ("constant", "0")


def test_changed_pad_amounts_are_an_error(dynamo_file, net):
    model = load(dynamo_file)
    node = pad_nodes(model)["reflect"]
    amounts = initializer(model, node.input[1])
    assert amounts.tolist() == [0, 0, 0, 1, 0, 0, 1, 2]  # premise: ONNX order, (left, right, top, bottom) = (1, 2, 0, 1)
    set_initializer(model, node.input[1], [0, 0, 1, 0, 0, 0, 2, 1])  # width and height swapped

    (finding,) = check(model, net)

    assert (finding.module, finding.expected, finding.actual) == ("reflect", "[0, 1, 1, 2]", "[1, 0, 2, 1]")
    assert finding.message.startswith("Pad amounts [1, 0, 2, 1] differ from reflect.padding [1, 2, 0, 1]")


def test_nothing_is_checked_without_a_pytorch_model(dynamo_file):
    model = load(dynamo_file)
    set_attribute(pad_nodes(model)["reflect"], "mode", "constant")
    assert list(pad_op.check(LintContext(model))) == []
