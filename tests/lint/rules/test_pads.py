"""pipeline/lint/rules/pads.py: explicit pads of Conv and pooling nodes against the module's padding."""
from __future__ import annotations

import pytest
import torch
from torch import nn

from pipeline.lint.rules import pads
from pipeline.lint.context import LintContext
from pipeline.zoo.calibrate import calibrate_batchnorm
from tests.lint.exports import EXPORTERS, attribute, errors, export, export_all, lint, load, nodes, only_node, set_attribute

X = torch.rand(1, 3, 8, 8, generator=torch.Generator().manual_seed(1))  # even size: TF 'SAME' would be asymmetric


class Down(nn.Module):
    """Stride-2 conv with symmetric padding=1 (BatchNorm folded into it), then a stride-2 max pool."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3, stride=2, padding=1)
        self.bn = nn.BatchNorm2d(8)
        self.pool = nn.MaxPool2d(3, 2, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.pool(torch.relu(self.bn(self.conv(x))))


class PaddedDown(nn.Module):
    """TF-style 'SAME' downsampling written in PyTorch: ZeroPad2d((0, 1, 0, 1)), then an unpadded stride-2 conv."""

    def __init__(self) -> None:
        super().__init__()
        self.pad = nn.ZeroPad2d((0, 1, 0, 1))
        self.conv = nn.Conv2d(3, 8, 3, stride=2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(self.pad(x))


class SameValid(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.odd = nn.Conv2d(3, 4, 3, padding="same")
        self.even = nn.Conv2d(4, 4, 4, padding="same")  # asymmetric [1, 1, 2, 2]
        self.valid = nn.Conv2d(4, 4, 3, padding="valid")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.valid(self.even(self.odd(x)))


@pytest.fixture(scope="module")
def down() -> Down:
    torch.manual_seed(0)
    return calibrate_batchnorm(Down(), torch.rand(8, 3, 8, 8) - 0.5)


@pytest.fixture(scope="module")
def down_files(down, tmp_path_factory):
    return export_all(down, (X,), tmp_path_factory.mktemp("pads_down"))


@pytest.fixture(scope="module")
def padded_down() -> PaddedDown:
    torch.manual_seed(0)
    return PaddedDown().eval()


@pytest.fixture(scope="module")
def padded_down_files(padded_down, tmp_path_factory):
    return export_all(padded_down, (X,), tmp_path_factory.mktemp("pads_zeropad"))


@pytest.fixture(scope="module")
def same_valid() -> SameValid:
    torch.manual_seed(0)
    return SameValid().eval()


@pytest.fixture(scope="module")
def same_valid_files(same_valid, tmp_path_factory):
    return export_all(same_valid, (X,), tmp_path_factory.mktemp("pads_same_valid"))


def check(model, torch_model) -> list:
    return list(pads.check(LintContext(model, torch_model, (X,))))


# --- correct exports ----------------------------------------------------------------------------


@pytest.mark.parametrize("exporter", EXPORTERS)
def test_stride2_symmetric_pads_are_not_an_error_but_a_note(down_files, down, exporter):
    model = load(down_files[exporter])
    conv = only_node(model, "Conv")

    findings = check(model, down)

    assert errors(lint(model, down, (X,))) == []
    assert {f.severity for f in findings} == {"info"}
    (note,) = [f for f in findings if f.node == conv.name]
    assert (note.module, note.actual) == ("conv", "[1, 1, 1, 1]")
    assert "symmetric pads [1, 1, 1, 1] with stride [2, 2] / kernel [3, 3]: TF 'SAME' would pad the bottom/right" in note.message


@pytest.mark.parametrize("exporter", EXPORTERS)
def test_zero_pad_before_a_stride2_conv_is_not_an_error(padded_down_files, padded_down, exporter):
    model = load(padded_down_files[exporter])

    findings = check(model, padded_down)

    assert errors(lint(model, padded_down, (X,))) == []
    assert all(f.severity == "info" for f in findings)
    conv_pads = attribute(only_node(model, "Conv"), "pads")
    if conv_pads == [0, 0, 1, 1]:  # the exporter fused ZeroPad2d into the Conv
        (note,) = findings
        assert note.message.startswith("asymmetric pads [0, 0, 1, 1]: the TF graph needs explicit padding")
    else:  # the Pad node still stands before the Conv
        assert conv_pads == [0, 0, 0, 0] and nodes(model, "Pad")


def test_the_dynamo_exporter_fuses_zero_pad_into_the_conv(padded_down_files):
    """The premise of the fused branch above, so that it is exercised."""
    model = load(padded_down_files["dynamo"])
    assert nodes(model, "Pad") == [] and attribute(only_node(model, "Conv"), "pads") == [0, 0, 1, 1]


@pytest.mark.parametrize("exporter", EXPORTERS)
def test_same_and_valid_padding_are_not_errors(same_valid_files, same_valid, exporter):
    model = load(same_valid_files[exporter])
    assert errors(check(model, same_valid)) == []
    assert errors(lint(model, same_valid, (X,))) == []


def test_same_padding_with_an_even_kernel_is_checked_as_asymmetric_pads(same_valid_files, same_valid):
    model = load(same_valid_files["dynamo"])
    even = nodes(model, "Conv")[1]
    assert attribute(even, "pads") == [1, 1, 2, 2]
    set_attribute(even, "pads", [2, 2, 1, 1])  # SAME_LOWER placement

    (finding,) = errors(check(model, same_valid))

    assert (finding.module, finding.expected, finding.actual) == ("even", "[1, 1, 2, 2]", "[2, 2, 1, 1]")


# --- tampered pads ------------------------------------------------------------------------------


@pytest.mark.parametrize("exporter", EXPORTERS)
def test_tf_same_placement_is_an_error_naming_it(down_files, down, exporter):
    model = load(down_files[exporter])
    conv = only_node(model, "Conv")
    set_attribute(conv, "pads", [0, 0, 1, 1])

    (finding,) = errors(check(model, down))

    assert (finding.rule, finding.node, finding.op_type, finding.module) == ("pads", conv.name, "Conv", "conv")
    assert (finding.expected, finding.actual) == ("[1, 1, 1, 1]", "[0, 0, 1, 1]")
    assert finding.message.startswith("pads [0, 0, 1, 1] are TF 'SAME' placement (extra row/column at the bottom/right), "
                                      "but conv pads symmetrically [1, 1, 1, 1]")


@pytest.mark.parametrize("exporter", EXPORTERS)
@pytest.mark.parametrize("tampered", [[1, 1, 2, 2], [0, 0, 0, 0], [2, 2, 2, 2], [1, 0, 1, 0]])
def test_other_pads_are_an_error(down_files, down, exporter, tampered):
    model = load(down_files[exporter])
    set_attribute(only_node(model, "Conv"), "pads", tampered)

    (finding,) = errors(check(model, down))

    assert (finding.module, finding.actual) == ("conv", str(tampered))
    assert finding.message == f"pads {tampered} differ from conv's padding [1, 1, 1, 1]: re-export, or fix the node's pads"


@pytest.mark.parametrize("exporter", EXPORTERS)
def test_changed_pool_pads_are_an_error(down_files, down, exporter):
    model = load(down_files[exporter])
    set_attribute(only_node(model, "MaxPool"), "pads", [0, 0, 1, 1])

    (finding,) = errors(check(model, down))

    assert (finding.op_type, finding.module, finding.expected) == ("MaxPool", "pool", "[1, 1, 1, 1]")


def test_fused_zero_pad_that_was_dropped_is_an_error(padded_down_files, padded_down):
    model = load(padded_down_files["dynamo"])
    set_attribute(only_node(model, "Conv"), "pads", [0, 0, 0, 0])

    (finding,) = errors(check(model, padded_down))

    assert (finding.module, finding.expected, finding.actual) == ("conv", "[0, 0, 1, 1]", "[0, 0, 0, 0]")


def test_auto_pad_nodes_are_left_to_the_auto_pad_rule(down_files, down):
    model = load(down_files["torchscript"])
    conv = only_node(model, "Conv")
    set_attribute(conv, "auto_pad", "SAME_LOWER")
    assert [f for f in check(model, down) if f.node == conv.name] == []


def test_without_a_pytorch_model_only_notes_are_given(down_files):
    model = load(down_files["dynamo"])
    set_attribute(only_node(model, "Conv"), "pads", [0, 0, 1, 1])
    findings = list(pads.check(LintContext(model)))
    assert findings and {f.severity for f in findings} == {"info"}


class ForwardPadded(torch.nn.Module):
    """Pads in forward code, TF-style (extra at the end), then a stride-2 conv with padding=0:
    the way transformers' MobileNets do it. The exporter folds the pad into the conv."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = torch.nn.Conv2d(3, 4, 3, stride=2)

    def forward(self, x):
        return self.conv(torch.nn.functional.pad(x, (0, 1, 0, 1)))


def test_padding_done_in_forward_code_is_not_an_error(tmp_path):
    model = ForwardPadded().eval()
    args = (torch.rand(1, 3, 8, 8),)
    onnx_model = load(export(model, args, tmp_path / "fwd.onnx", "dynamo"))
    findings = lint(onnx_model, model, args, rule="pads")
    assert errors(findings) == []
    conv = only_node(onnx_model, "Conv")
    if attribute(conv, "pads") == [0, 0, 1, 1]:  # the exporter folded the pad into the conv
        assert any("measured in a forward pass: its call's own [0, 0, 0, 0] plus [0, 0, 1, 1] padded just before it"
                   in f.message for f in findings)


# --- padding PyTorch applies in forward, measured (transformers' BiT) ---------------------------

BIT_X = torch.rand(1, 3, 32, 32, generator=torch.Generator().manual_seed(2))  # even: TF 'SAME' pads the end more


@pytest.fixture(scope="module")
def bit():
    """A tiny BiT from transformers' own classes (random weights, nothing downloaded): global_padding 'SAME'
    makes its stride-2 convs WeightStandardizedConv2d with padding 0 and a DynamicPad2d run in forward."""
    import transformers

    from pipeline.zoo.hf import ImageLogits

    torch.manual_seed(0)
    config = transformers.BitConfig(num_channels=3, embedding_size=8, hidden_sizes=[8, 16], depths=[1, 1], num_groups=2,
                                    global_padding="SAME", layer_type="bottleneck", embedding_dynamic_padding=True,
                                    num_labels=3)
    return ImageLogits(transformers.BitForImageClassification(config)).eval()  # GroupNorm only: nothing to calibrate


@pytest.fixture(scope="module")
def bit_file(bit, tmp_path_factory):
    return export(bit, (BIT_X,), tmp_path_factory.mktemp("pads_bit") / "bit.onnx", "dynamo")


STEM = "model.bit.embedder.convolution"


def only_node_named(model, name: str):
    (node,) = [n for n in model.graph.node if n.name == name]
    return node


def test_bits_padding_in_forward_is_what_the_fused_pads_say(bit, bit_file):
    """The premise, and the numbers: the exporter folded BiT's dynamic pads into the Conv, and ONNX Runtime
    computes what PyTorch does with them."""
    import onnxruntime

    model = load(bit_file)
    findings = lint(model, bit, (BIT_X,), rule="pads")
    stem = next(f for f in findings if f.module == STEM)
    assert attribute(only_node_named(model, stem.node), "pads") == [2, 2, 3, 3]  # kernel 7, stride 2, 32 px: TF 'SAME'
    session = onnxruntime.InferenceSession(str(bit_file), providers=["CPUExecutionProvider"])
    (ours,) = session.run(None, {session.get_inputs()[0].name: BIT_X.numpy()})
    with torch.no_grad():
        reference = bit(BIT_X).numpy()
    assert abs(ours - reference).max() <= 1e-4 * max(1.0, abs(reference).max())


def test_bits_padding_in_forward_is_not_an_error(bit, bit_file):
    model = load(bit_file)

    findings = lint(model, bit, (BIT_X,), rule="pads")

    assert [f for f in findings if f.severity != "info"] == []
    assert errors(lint(model, bit, (BIT_X,))) == []  # no rule errs: the numbers agree
    measured = [f for f in findings if "measured in a forward pass" in f.message]
    assert {f.module for f in measured} == {STEM, "model.bit.encoder.stages.1.layers.0.conv2"}
    stem = next(f for f in measured if f.module == STEM)
    assert stem.actual == "[2, 2, 3, 3]" and "its call's own [0, 0, 0, 0] plus [2, 2, 3, 3] padded just before it" in stem.message


@pytest.mark.parametrize("tampered", [[3, 3, 2, 2], [2, 2, 2, 2], [0, 0, 0, 0]])
def test_bits_pads_changed_from_what_pytorch_applies_are_an_error(bit, bit_file, tampered):
    model = load(bit_file)
    stem = next(f for f in lint(model, bit, (BIT_X,), rule="pads") if f.module == STEM)
    set_attribute(only_node_named(model, stem.node), "pads", tampered)

    (finding,) = errors(lint(model, bit, (BIT_X,), rule="pads"))

    assert (finding.module, finding.expected, finding.actual) == (STEM, "[2, 2, 3, 3]", str(tampered))
    assert finding.message == (f"pads {tampered} differ from the padding PyTorch applies at {STEM}, [2, 2, 3, 3] (measured "
                               "in a forward pass, with what its forward code pads): re-export, or fix the node's pads")


class TwoPaddingsConv2d(nn.Conv2d):
    """Runs its weight twice in forward, with two different paddings: which one a Conv node is cannot be measured."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        padded = nn.functional.conv2d(nn.functional.pad(x, (0, 1, 0, 1)), self.weight, self.bias, 2)
        return padded + nn.functional.conv2d(x, self.weight, self.bias, 2, 1)


def test_padding_that_cannot_be_measured_is_a_warning_that_says_so(tmp_path):
    torch.manual_seed(0)
    model = nn.Sequential(TwoPaddingsConv2d(3, 4, 3)).eval()
    onnx_model = load(export(model, (X,), tmp_path / "two.onnx", "dynamo"))

    findings = [f for f in lint(onnx_model, model, (X,), rule="pads") if f.severity != "info"]

    assert findings and {f.severity for f in findings} == {"warning"}
    assert all("the padding PyTorch really applies there could not be measured (it runs more than one conv or pool "
               "call, with different padding or input sizes): this lint cannot tell whether they are right; the audit's "
               "numbers can" in f.message for f in findings)
    assert {f.actual for f in findings} == {"[0, 0, 1, 1]", "[1, 1, 1, 1]"}

