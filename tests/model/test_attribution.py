"""pipeline/model/attribution.py: which PyTorch module an ONNX node came from, or an honest "not known"."""
from __future__ import annotations

import numpy as np
import onnx
import pytest
import torch
from onnx import helper
from torch import nn

from pipeline.lint.rules import bn_epsilon
from pipeline.model.attribution import NAME_SCOPES, Attribution, Attributor
from pipeline.lint.context import LintContext
from pipeline.zoo.calibrate import calibrate_batchnorm
from tests.lint.exports import EXPORTERS, errors, export_all, load, nodes, strip_names

X = torch.rand(1, 3, 8, 8, generator=torch.Generator().manual_seed(1))

# --- the Attributor on nodes built with onnx.helper -----------------------------------------------

TYPES = {"layer1": "Sequential", "layer1.0": "Block", "layer1.0.conv": "Conv2d", "layer1.0.bn": "BatchNorm2d",
         "layer1.1": "Block", "layer1.1.bn": "BatchNorm2d", "head": "Conv2d"}
RNG = np.random.default_rng(0)
PARAMS = {"layer1.0.conv.weight": RNG.random((4, 4, 3, 3), np.float32), "layer1.0.bn.weight": RNG.random(4, np.float32),
          "layer1.1.bn.weight": RNG.random(4, np.float32), "head.weight": RNG.random((2, 4, 1, 1), np.float32)}


def attributor(initializers: dict[str, np.ndarray], params: dict = PARAMS) -> Attributor:
    return Attributor(TYPES, params, initializers.get)


def node(name: str = "", inputs=("x",), scopes: str | None = None, op_type: str = "BatchNormalization") -> onnx.NodeProto:
    made = helper.make_node(op_type, list(inputs), ["y"], name=name)
    if scopes is not None:
        made.metadata_props.add(key=NAME_SCOPES, value=scopes)
    return made


def test_metadata_gives_the_innermost_module_of_the_wanted_class():
    scopes = "['', 'layer1', 'layer1.0', 'layer1.0.bn', '_native_batch_norm_legit_no_training']"
    assert attributor({}).attribute(node(scopes=scopes)) == Attribution("layer1.0.bn", "metadata")
    assert attributor({}).attribute(node(scopes=scopes), want=("Block",)) == Attribution("layer1.0", "metadata")


def test_scoped_node_name_is_rebuilt_into_the_module_path():
    found = attributor({}).attribute(node("/layer1/layer1.0/bn/BatchNormalization"))
    assert found == Attribution("layer1.0.bn", "node name")
    assert found.describe() == "via node name"


def test_initializer_named_after_a_parameter_gives_its_module():
    inits = {"layer1.1.bn.weight": PARAMS["layer1.1.bn.weight"] * 2}  # folded values: only the name tells
    found = attributor(inits).attribute(node("node_Mul_7", ["x", "layer1.1.bn.weight"]))
    assert found == Attribution("layer1.1.bn", "initializer names")


def test_initializer_name_merged_from_equal_parameters_is_ambiguous():
    """An exporter that merges equal initializers names them after one parameter; the other is then absent."""
    params = dict(PARAMS, **{"layer1.1.bn.weight": PARAMS["layer1.0.bn.weight"].copy()})
    inits = {"layer1.0.bn.weight": PARAMS["layer1.0.bn.weight"].copy()}
    bn = node("n0", ["x", "layer1.0.bn.weight"])

    merged = Attributor(TYPES, params, inits.get, frozenset(inits)).attribute(bn)
    separate = Attributor(TYPES, params, inits.get, frozenset(inits) | {"layer1.1.bn.weight"}).attribute(bn)

    assert (merged.module, merged.note) == (
        None, "ambiguous: initializers ['layer1.0.bn.weight'] may stand for equal parameters of ['layer1.0.bn', 'layer1.1.bn']")
    assert separate == Attribution("layer1.0.bn", "initializer names")


def test_initializer_values_equal_to_a_parameter_give_its_module():
    inits = {"onnx::Conv_12": PARAMS["layer1.0.conv.weight"].copy()}
    found = attributor(inits).attribute(node("n3", ["x", "onnx::Conv_12"], op_type="Conv"))
    assert found == Attribution("layer1.0.conv", "initializer values")


def test_want_skips_modules_of_other_classes():
    scopes = "['', 'layer1', 'layer1.0', 'layer1.0.bn', 'x']"
    found = attributor({}).attribute(node("/layer1/layer1.0/bn/Conv", scopes=scopes), want=("Conv2d",))
    assert found.module is None and found.method == "none"


def test_identical_parameters_are_ambiguous_never_a_guess():
    params = dict(PARAMS, **{"layer1.1.bn.weight": PARAMS["layer1.0.bn.weight"].copy()})
    inits = {"w0": PARAMS["layer1.0.bn.weight"].copy()}

    found = attributor(inits, params).attribute(node("n0", ["x", "w0"]))

    assert found.module is None
    assert found.note == "ambiguous: initializers match ['layer1.0.bn', 'layer1.1.bn']"
    assert found.describe() == "not attributed: ambiguous: initializers match ['layer1.0.bn', 'layer1.1.bn']"


def test_nothing_matches_says_so():
    found = attributor({"w0": np.zeros(4, np.float32)}).attribute(node("n0", ["x", "w0"]))
    assert found.module is None
    assert found.describe().startswith("not attributed: no name-scope metadata, no scoped node name")


def test_without_a_pytorch_model_nothing_is_attributed():
    found = LintContext(onnx.ModelProto()).attribute(node("/layer1/layer1.0/bn/BatchNormalization"))
    assert (found.module, found.note) == (None, "no PyTorch model to attribute to")


# --- real exports ---------------------------------------------------------------------------------


class Block(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(4, 4, 3, padding=1)
        self.bn = nn.BatchNorm2d(4)  # after a ReLU: stays a BatchNormalization node

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.bn(torch.relu(self.conv(x)))


class Net(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, 4, 1)
        self.layer1 = nn.Sequential(Block(), Block())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layer1(self.stem(x))


class Twins(nn.Module):
    """Two BatchNorms with identical parameters (as freshly initialised ones are)."""

    def __init__(self, eps_a: float = 1e-5, eps_b: float = 1e-5) -> None:
        super().__init__()
        self.a = nn.BatchNorm2d(3, eps=eps_a)
        self.b = nn.BatchNorm2d(3, eps=eps_b)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.a(x) + self.b(torch.relu(x))


@pytest.fixture(scope="module")
def net() -> Net:
    torch.manual_seed(0)
    return calibrate_batchnorm(Net(), torch.rand(8, 3, 8, 8) - 0.5)


@pytest.fixture(scope="module")
def files(net, tmp_path_factory):
    return export_all(net, (X,), tmp_path_factory.mktemp("attribution"))


@pytest.fixture(scope="module")
def twins() -> Twins:
    torch.manual_seed(0)
    model = calibrate_batchnorm(Twins(eps_a=1e-5, eps_b=1e-3), torch.rand(8, 3, 8, 8) - 0.5)
    model.b.load_state_dict(model.a.state_dict())
    return model


@pytest.fixture(scope="module")
def twin_files(twins, tmp_path_factory):
    return export_all(twins, (X,), tmp_path_factory.mktemp("attribution_twins"))


def attributions(model: onnx.ModelProto, torch_model, op_type: str, want=()) -> list:
    context = LintContext(model, torch_model, (X,))
    return [context.attribute(n, want) for n in nodes(model, op_type)]


def test_dynamo_export_is_attributed_by_metadata(files, net):
    found = attributions(load(files["dynamo"]), net, "BatchNormalization", bn_epsilon.BN_CLASSES)
    assert found == [Attribution("layer1.0.bn", "metadata"), Attribution("layer1.1.bn", "metadata")]


def test_torchscript_export_is_attributed_by_scoped_node_names(files, net):
    model = load(files["torchscript"])
    assert [n.name for n in nodes(model, "BatchNormalization")][0] == "/layer1/layer1.0/bn/BatchNormalization"  # premise
    found = attributions(model, net, "BatchNormalization")
    assert found == [Attribution("layer1.0.bn", "node name"), Attribution("layer1.1.bn", "node name")]
    assert [a.module for a in attributions(model, net, "Conv")] == ["stem", "layer1.0.conv", "layer1.1.conv"]


@pytest.mark.parametrize("exporter", EXPORTERS)
def test_without_metadata_and_node_names_initializer_names_attribute(files, net, exporter):
    model = strip_names(load(files[exporter]))
    found = attributions(model, net, "BatchNormalization")
    assert found == [Attribution("layer1.0.bn", "initializer names"), Attribution("layer1.1.bn", "initializer names")]


@pytest.mark.parametrize("exporter", EXPORTERS)
def test_with_every_name_meaningless_initializer_values_attribute(files, net, exporter):
    model = strip_names(load(files[exporter]), initializers=True)
    found = attributions(model, net, "BatchNormalization")
    assert found == [Attribution("layer1.0.bn", "initializer values"), Attribution("layer1.1.bn", "initializer values")]


@pytest.mark.parametrize("exporter", EXPORTERS)
def test_identical_modules_are_told_apart_by_metadata_or_node_name(twin_files, twins, exporter):
    found = attributions(load(twin_files[exporter]), twins, "BatchNormalization")
    assert [a.module for a in found] == ["a", "b"]


@pytest.mark.parametrize("initializers", [False, True], ids=["names kept", "names stripped"])
def test_identical_modules_without_metadata_are_ambiguous(twin_files, twins, initializers):
    """The dynamo exporter merges initializers with equal values into one name (`b`'s node reads `a.weight`),
    so without metadata neither node can be told apart."""
    model = strip_names(load(twin_files["dynamo"]), initializers=initializers)
    assert initializers or "b.weight" not in {i.name for i in model.graph.initializer}  # premise: merged

    found = attributions(model, twins, "BatchNormalization", bn_epsilon.BN_CLASSES)

    assert [a.module for a in found] == [None, None]
    assert all(a.note.startswith("ambiguous") and "'a'" in a.note and "'b'" in a.note for a in found)


def test_identical_modules_in_torchscript_keep_their_own_parameter_names(twin_files, twins):
    """The TorchScript exporter shares equal initializers through Identity nodes named after each parameter,
    so `b`'s node still names `b`; `a`'s node, with its initializers renamed, matches both by value."""
    model = strip_names(load(twin_files["torchscript"]), initializers=True)

    node_a, node_b = attributions(model, twins, "BatchNormalization", bn_epsilon.BN_CLASSES)

    assert (node_a.module, node_a.note) == (None, "ambiguous: initializers match ['a', 'b']")
    assert node_b == Attribution("b", "initializer names")


@pytest.mark.parametrize("exporter", EXPORTERS)
@pytest.mark.parametrize("initializers", [False, True], ids=["names kept", "names stripped"])
def test_identical_modules_are_never_checked_against_the_wrong_eps(twin_files, twins, exporter, initializers):
    """`a` and `b` differ only in eps; a guess would check `b`'s node against `a`'s eps and report a false error."""
    model = strip_names(load(twin_files[exporter]), initializers=initializers)

    findings = list(bn_epsilon.check(LintContext(model, twins, (X,))))

    assert errors(findings) == []
    assert all("could not be checked: not attributed: ambiguous" in f.message for f in findings)


def test_ambiguous_batchnorm_is_a_warning(twin_files, twins):
    model = strip_names(load(twin_files["dynamo"]))
    findings = list(bn_epsilon.check(LintContext(model, twins, (X,))))
    assert [(f.severity, f.module) for f in findings] == [("warning", None), ("warning", None)]
