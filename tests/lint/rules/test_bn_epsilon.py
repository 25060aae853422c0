"""pipeline/lint/rules/bn_epsilon.py: BatchNormalization nodes, and BatchNorm folded into a Conv, against the module's eps."""
from __future__ import annotations


import copy
import re

import numpy as np
import onnx
import pytest
import torch
from torch import nn

from pipeline.lint.rules import bn_epsilon
from pipeline.lint.epsilon import evident_epsilon, same_epsilon
from pipeline.lint.context import LintContext
from pipeline.zoo.calibrate import calibrate_batchnorm
from tests.lint.exports import (EXPORTERS, errors, export_all, initializer, lint, load, nodes, only_node, set_attribute,
                                set_initializer, strip_names)

X = torch.rand(1, 3, 8, 8, generator=torch.Generator().manual_seed(1))


class BNNet(nn.Module):
    """BatchNorm on the input (`pre`), after a Conv (`stem.1`, which exporters fold into the Conv)
    and after a ReLU (`post`): only `stem.1` can be folded, the others stay BatchNormalization nodes."""

    def __init__(self, pre_eps: float, stem_eps: float, post_eps: float) -> None:
        super().__init__()
        self.pre = nn.BatchNorm2d(3, eps=pre_eps)
        self.stem = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8, eps=stem_eps), nn.ReLU())
        self.post = nn.BatchNorm2d(8, eps=post_eps)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.post(self.stem(self.pre(x)))


def build(pre_eps: float = 1e-5, stem_eps: float = 1e-5, post_eps: float = 1e-5) -> BNNet:
    torch.manual_seed(0)
    return calibrate_batchnorm(BNNet(pre_eps, stem_eps, post_eps), torch.rand(8, 3, 8, 8) - 0.5)


def with_eps(model: nn.Module, path: str, eps: float) -> nn.Module:
    """A copy of `model` whose module at `path` has another eps: the model the export did not come from."""
    other = copy.deepcopy(model)
    other.get_submodule(path).eps = eps
    return other


@pytest.fixture(scope="module")
def default_net() -> BNNet:
    return build()


@pytest.fixture(scope="module")
def default_files(default_net, tmp_path_factory):
    return export_all(default_net, (X,), tmp_path_factory.mktemp("bn_default"))


@pytest.fixture(scope="module")
def keras_eps_net() -> BNNet:
    """A model that uses non-default eps on purpose (ported from Keras, or tuned)."""
    return build(pre_eps=1e-3, stem_eps=1e-3, post_eps=1e-4)


@pytest.fixture(scope="module")
def keras_eps_files(keras_eps_net, tmp_path_factory):
    return export_all(keras_eps_net, (X,), tmp_path_factory.mktemp("bn_keras_eps"))


def bn_node(model: onnx.ModelProto, input_prefix: str) -> onnx.NodeProto:
    """The BatchNormalization node whose scale initializer belongs to the module `input_prefix`."""
    (node,) = [n for n in nodes(model, "BatchNormalization") if n.input[1] == f"{input_prefix}.weight"]
    return node


def check(model: onnx.ModelProto, torch_model) -> list:
    return list(bn_epsilon.check(LintContext(model, torch_model, (X,))))


# --- what must not be flagged -------------------------------------------------------------------


@pytest.mark.parametrize("exporter", EXPORTERS)
def test_clean_export_has_no_finding(default_files, default_net, exporter):
    model = load(default_files[exporter])
    assert len(nodes(model, "BatchNormalization")) == 2  # premise: `pre` and `post` stay unfused
    assert check(model, default_net) == []
    assert errors(lint(model, default_net, (X,))) == []


@pytest.mark.parametrize("exporter", EXPORTERS)
def test_intentional_non_default_eps_is_not_flagged(keras_eps_files, keras_eps_net, exporter):
    model = load(keras_eps_files[exporter])
    assert check(model, keras_eps_net) == []
    assert errors(lint(model, keras_eps_net, (X,))) == []


def test_float32_storage_of_the_epsilon_is_not_a_difference():
    assert np.float32(1e-5).item() == pytest.approx(9.99999974738e-06, rel=1e-12)  # how it is stored
    assert same_epsilon(9.99999974738e-06, 1e-5)
    assert same_epsilon(np.float32(1e-4).item(), 1e-4)
    assert not same_epsilon(1.2e-5, 1e-5)


@pytest.mark.parametrize("exporter", EXPORTERS)
def test_epsilon_written_at_float32_precision_is_not_flagged(default_files, default_net, exporter):
    model = load(default_files[exporter])
    set_attribute(bn_node(model, "post"), "epsilon", 9.99999974738e-06)
    assert check(model, default_net) == []


def test_nothing_is_checked_without_a_pytorch_model(default_files):
    model = load(default_files["dynamo"])
    set_attribute(bn_node(model, "post"), "epsilon", 1e-3)
    assert list(bn_epsilon.check(LintContext(model))) == []


# --- a BatchNormalization node whose epsilon was changed ------------------------------------------


@pytest.mark.parametrize("exporter", EXPORTERS)
def test_changed_epsilon_is_an_error_naming_node_and_module(default_files, default_net, exporter):
    model = load(default_files[exporter])
    node = bn_node(model, "post")
    set_attribute(node, "epsilon", 1e-3)

    (finding,) = check(model, default_net)

    assert (finding.severity, finding.node, finding.op_type, finding.module) == ("error", node.name, "BatchNormalization", "post")
    assert (finding.expected, finding.actual) == ("1e-05", "0.001")
    assert "epsilon is 0.001 (Keras/TensorFlow's default) but module post uses eps=1e-05" in finding.message
    assert finding.attribution == ("via metadata" if exporter == "dynamo" else "via node name")


@pytest.mark.parametrize("exporter", EXPORTERS)
def test_changed_epsilon_of_a_batchnorm_on_the_input_is_an_error(default_files, default_net, exporter):
    model = load(default_files[exporter])
    set_attribute(bn_node(model, "pre"), "epsilon", 1e-3)

    (finding,) = check(model, default_net)

    assert (finding.severity, finding.module) == ("error", "pre")
    assert "Keras/TensorFlow's default" in finding.message


def test_epsilon_close_to_but_not_the_module_eps_is_an_error(default_files, default_net):
    model = load(default_files["torchscript"])
    set_attribute(bn_node(model, "post"), "epsilon", 1.2e-5)
    (finding,) = check(model, default_net)
    assert (finding.severity, finding.actual) == ("error", "1.2e-05")
    assert "epsilon is 1.2e-05 but module post uses eps=1e-05" in finding.message  # no default named


def test_changed_epsilon_is_caught_after_names_and_metadata_are_stripped(default_files, default_net):
    model = strip_names(load(default_files["torchscript"]), initializers=True)
    node = nodes(model, "BatchNormalization")[-1]
    set_attribute(node, "epsilon", 1e-3)

    (finding,) = check(model, default_net)

    assert (finding.severity, finding.node, finding.module) == ("error", node.name, "post")
    assert finding.attribution == "via initializer values"


def test_unattributed_batchnorm_node_is_a_warning_not_an_error(default_files):
    """Stripped of names, and against a model whose BatchNorm values match nothing in the graph, the nodes
    cannot be attributed: the rule says so instead of guessing."""
    model = strip_names(load(default_files["torchscript"]), initializers=True)
    unrelated = build()
    with torch.no_grad():
        for module in (unrelated.pre, unrelated.post):
            for values in (module.weight, module.bias, module.running_mean, module.running_var):
                values.mul_(2.0)

    findings = check(model, unrelated)

    assert [f.severity for f in findings if f.op_type == "BatchNormalization"] == ["warning", "warning"]
    assert all("could not be checked: not attributed" in f.message for f in findings if f.op_type == "BatchNormalization")


# --- a BatchNorm folded into the Conv ------------------------------------------------------------


@pytest.mark.parametrize("exporter", EXPORTERS)
def test_bn_folded_with_another_eps_is_an_error_on_the_conv(default_files, default_net, exporter):
    model = load(default_files[exporter])
    conv = only_node(model, "Conv")

    (finding,) = check(model, with_eps(default_net, "stem.1", 1e-3))

    assert (finding.severity, finding.node, finding.op_type, finding.module) == ("error", conv.name, "Conv", "stem.1")
    assert finding.expected == "0.001"
    assert float(finding.actual) == pytest.approx(1e-5, rel=1e-9)  # rounded to the value it evidently is
    shown, estimate = folded_epsilons(finding.message)
    assert shown == pytest.approx(1e-5, rel=1e-9) and estimate == pytest.approx(1e-5, rel=0.02)
    assert "(PyTorch's default)" in finding.message and "but the module uses eps=0.001" in finding.message


def folded_epsilons(message: str) -> tuple[float, float]:
    """The epsilon a folded-BatchNorm finding shows, and the raw estimate beside it, as numbers."""
    match = re.search(r"epsilon ~(\S+) .*\(estimated (\S+) from the folded weights\)", message)
    assert match, message
    return float(match.group(1)), float(match.group(2))


@pytest.mark.parametrize("estimate, evident", [(9.99e-6, 1e-5), (1.0004e-3, 1e-3), (0.0999, 0.1), (3.996e-4, 4e-4), (3.7e-4, 3.7e-4)])
def test_an_implied_epsilon_is_rounded_only_when_it_evidently_is_that_value(estimate, evident):
    assert evident_epsilon(estimate) == pytest.approx(evident, rel=1e-9)


@pytest.mark.parametrize("exporter", EXPORTERS)
def test_bn_folded_with_keras_eps_reports_the_implied_epsilon(keras_eps_files, keras_eps_net, exporter):
    model = load(keras_eps_files[exporter])

    (finding,) = check(model, with_eps(keras_eps_net, "stem.1", 1e-5))

    assert (finding.severity, finding.op_type, finding.module, finding.expected) == ("error", "Conv", "stem.1", "1e-05")
    assert float(finding.actual) == pytest.approx(1e-3, rel=0.05)
    assert "(Keras/TensorFlow's default)" in finding.message
    assert folded_epsilons(finding.message)[0] == pytest.approx(1e-3, rel=1e-9)


@pytest.mark.parametrize("exporter", EXPORTERS)
def test_changed_folded_bias_is_an_error(default_files, default_net, exporter):
    model = load(default_files[exporter])
    bias_name = only_node(model, "Conv").input[2]
    set_initializer(model, bias_name, initializer(model, bias_name) + 0.1)

    (finding,) = check(model, default_net)

    assert (finding.severity, finding.module, finding.expected) == ("error", "stem.1", "folded bias")
    assert "the bias folded from BatchNorm stem.1 differs from (b-mean)*g/sqrt(var+eps)+beta by up to 0.1" in finding.message


# --- a Conv followed by a BatchNormalization node is not a fold ------------------------------------


class TwinBranches(nn.Module):
    """Two Conv+BatchNorm branches whose BatchNorms have identical statistics, so values cannot tell them apart."""

    def __init__(self) -> None:
        super().__init__()
        self.a = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.BatchNorm2d(4))
        self.b = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.BatchNorm2d(4))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.a(x) + self.b(torch.relu(x))


@pytest.fixture(scope="module")
def twin_branches() -> TwinBranches:
    torch.manual_seed(0)
    model = calibrate_batchnorm(TwinBranches(), torch.rand(8, 3, 8, 8) - 0.5)
    model.b[1].load_state_dict(model.a[1].state_dict())
    return model


@pytest.fixture(scope="module")
def unfused_file(twin_branches, tmp_path_factory):
    """Without constant folding the TorchScript exporter keeps Conv and BatchNormalization apart."""
    path = tmp_path_factory.mktemp("bn_unfused") / "torchscript.onnx"
    torch.onnx.export(twin_branches, (X,), str(path), dynamo=False, do_constant_folding=False)
    return path


def test_unfused_conv_and_batchnorm_are_not_flagged(unfused_file, twin_branches):
    model = load(unfused_file)
    assert len(nodes(model, "BatchNormalization")) == 2  # premise
    assert check(model, twin_branches) == []


def test_unattributed_batchnorm_after_a_conv_does_not_make_the_conv_a_fold(unfused_file, twin_branches):
    """The Conv feeding a BatchNormalization node has its own weights (scale 1), which must not be read
    as a fold with a wrong epsilon when that BatchNormalization node cannot be attributed."""
    model = strip_names(load(unfused_file), initializers=True)

    findings = check(model, twin_branches)

    assert errors(findings) == []
    assert any(f.severity == "warning" and "ambiguous" in f.message for f in findings)  # premise: one is unattributed
    assert [f.message for f in findings if f.op_type == "Conv"] == [
        "no BatchNormalization node attributed to a.1 and no Conv with it folded in was found; its eps was not checked structurally"]


def test_the_quick_test_never_rules_out_a_conv_the_median_fit_accepts():
    """Folds with noise up to and past the median fit's tolerance, zero rows and tiny weights: wherever the
    median fit accepts, the quick test lets the Conv through; an unrelated Conv of the same shape it rules out."""
    rng = np.random.default_rng(0)
    accepted = 0
    for trial in range(400):
        flat = rng.normal(size=(6, 12))
        flat[rng.random(flat.shape) < 0.2] *= 1e-7  # some weights below the usable threshold
        if trial % 7 == 0:
            flat[trial % 6] = 0.0  # a channel with no usable weight
        folded = rng.uniform(0.2, 3.0, size=(6, 1)) * rng.choice([-1.0, 1.0], size=(6, 1)) * flat  # gamma of either sign
        noise = 10 ** rng.uniform(-8, -3.5) * np.abs(folded).max()
        folded = folded + rng.uniform(-noise, noise, size=folded.shape)
        usable = np.abs(flat) > 1e-6 * np.abs(flat).max()
        if bn_epsilon.median_fit(folded, flat, usable) is not None:
            accepted += 1
            assert bn_epsilon._may_fit(folded, flat, usable)
        assert not bn_epsilon._may_fit(rng.normal(size=flat.shape), flat, usable)
    assert 50 < accepted < 350  # both sides of the tolerance were tried
