"""pipeline/diagnose/rules/: each attribute rule on a port that gets it wrong, and the fix."""
from __future__ import annotations

from pathlib import Path

import pytest

from pipeline.artifacts.folder import ArtifactDir
from pipeline.diagnose.load import load_port
from pipeline.diagnose.rules.padding import torch_pads
from pipeline.diagnose.stage import DiagnoseRequest, diagnose
from pipeline.model.torch_model import build_model
from tests.diagnose import ports


def _errors(record) -> dict[tuple[str, str], object]:
    return {(f.rule, f.keras_layer): f for f in record.errors}


def test_flatten_of_nhwc_before_a_dense_with_nchw_weights(tmp_path):
    record = ports.diagnose_port(tmp_path, "flatten_head", [1, 3, 8, 8], ports.flatten_port)
    finding = _errors(record)[("flatten_order", "flatten")]
    assert finding.module == "3"
    assert finding.explained == pytest.approx(1.0, abs=0.01)
    assert record.fixed["verdict"] == "faithful"
    assert type(load_port(Path(record.fixed["path"])).get_layer("flatten_to_nchw")).__name__ == "Permute"


@pytest.fixture(scope="module")
def mixed(tmp_path_factory):
    return ports.diagnose_port(tmp_path_factory.mktemp("mixed"), "mixed", [1, 3, 16, 16], ports.mixed_port)


def test_leaky_relu_slope_keras_default_against_pytorch_default(mixed):
    finding = _errors(mixed)[("activation", "leaky")]
    assert finding.attribute == "negative_slope"
    assert (finding.expected, finding.actual) == ("leaky_relu(0.01)", "leaky_relu(0.3)")


def test_average_pool_padding_counted_by_pytorch(mixed):
    finding = _errors(mixed)[("padding", "pool")]
    assert finding.detail["pytorch_pads"] == [1, 1, 1, 1] and finding.detail["port_pads"] == [0, 0, 1, 1]
    assert "ZeroPadding2D" in finding.correction.description


def test_upsampling_mode_and_layer_norm_epsilon(mixed):
    errors = _errors(mixed)
    assert (errors[("upsample", "up")].expected, errors[("upsample", "up")].actual) == ("nearest", "bilinear")
    norm = errors[("norm_epsilon", "norm")]
    assert norm.expected == pytest.approx(1e-5) and norm.actual == pytest.approx(1e-3)


def test_every_correction_together_gives_a_faithful_port(mixed):
    assert mixed.all_corrections["explained"] == pytest.approx(1.0, abs=0.01)
    assert mixed.fixed["verdict"] == "faithful"


@pytest.mark.parametrize(("size", "ceil_mode", "expected"), [(7, False, [0, 0]), (7, True, [0, 1]), (8, True, [0, 0])])
def test_torch_pads_include_ceil_mode_overhang(size, ceil_mode, expected):
    import torch

    assert torch_pads(torch.nn.MaxPool1d(2, ceil_mode=ceil_mode), 1, [size]) == expected


def test_depthwise_port_with_explicit_padding_is_faithful(tmp_path):
    record = ports.diagnose_port(tmp_path, "mobile", [1, 3, 32, 32], lambda m: ports.mobile_port(m, explicit_padding=True), fix=False)
    assert record.errors == []
    assert record.verdict == "faithful"
    assert {p["keras_layer"] for p in record.mapping["pairs"]} >= {"stem", "dw", "pw", "stem_relu6", "dw_relu6"}


def test_depthwise_port_with_same_padding_and_keras_epsilon(tmp_path):
    record = ports.diagnose_port(tmp_path, "mobile", [1, 3, 32, 32], lambda m: ports.mobile_port(m, epsilon=1e-3))
    errors = _errors(record)
    assert ("padding", "stem") in errors and ("padding", "dw") not in errors
    assert {layer for rule, layer in errors if rule == "bn_epsilon"} == {"stem_bn", "dw_bn", "pw_bn"}
    assert record.fixed["verdict"] == "faithful"


def _repo_record(tmp: Path, config: str, make_port, fix: bool = False):
    from pipeline.config import resolve_source

    source = resolve_source(config)
    port = tmp / "port.keras"
    make_port(build_model(source)).save(port)
    request = DiagnoseRequest(source, port, ArtifactDir.for_model(source.name, str(tmp / "out")),
                              fix=tmp / "fixed.keras" if fix else None)
    return diagnose(request)


@pytest.mark.parametrize("down", ["pad", "same"])
def test_pytorch_zero_pad_before_a_stride2_conv_matches_same_or_zero_padding(tmp_path, down):
    record = _repo_record(tmp_path, "configs/residual_file.yaml", lambda m: ports.residual_port(m, down))
    assert record.errors == []
    assert record.verdict == "faithful"


def test_pytorch_zero_pad_missing_from_the_port(tmp_path):
    record = _repo_record(tmp_path, "configs/residual_file.yaml", lambda m: ports.residual_port(m, "valid"), fix=True)
    finding = _errors(record)[("padding", "down")]
    assert finding.detail["pytorch_pads"] == [0, 0, 1, 1] and finding.detail["port_pads"] == [0, 0, 0, 0]
    assert finding.correction.description == "padding='same'"
    assert record.fixed["verdict"] == "faithful"


def test_group_norm_epsilon_gelu_approximation_and_relu6(tmp_path):
    record = ports.diagnose_port(tmp_path, "gelu_group", [1, 3, 16, 16], ports.gelu_group_port)
    errors = _errors(record)
    assert set(errors) == {("norm_epsilon", "gn"), ("activation", "gelu")}
    gelu = errors[("activation", "gelu")]
    assert (gelu.attribute, gelu.expected, gelu.actual) == ("approximate", "gelu(tanh)", "gelu")
    assert gelu.correction is None and "no built-in Keras layer" in gelu.message
    assert record.fixed["verdict"] == "not_faithful"  # the GELU cannot be corrected with built-in layers


def test_missing_conv_bias_is_restored_from_pytorch(tmp_path):
    port = lambda m: ports.flatten_port(m, permute_kernel=True, conv_bias=False)  # noqa: E731
    record = ports.diagnose_port(tmp_path, "flatten_head", [1, 3, 8, 8], port)
    finding = _errors(record)[("bias", "conv")]
    assert (finding.attribute, finding.expected, finding.actual) == ("use_bias", True, False)
    assert finding.explained == pytest.approx(1.0, abs=0.01)
    assert record.fixed["verdict"] == "faithful"
    assert load_port(Path(record.fixed["path"])).get_layer("conv").use_bias
