"""pipeline/diagnose/mapping.py: Keras layers to PyTorch modules by weights, then order and type."""
from __future__ import annotations

from pipeline.diagnose.mapping import BY_ORDER, BY_WEIGHTS_NHWC, BY_WEIGHTS_PERMUTED
from tests.diagnose import ports


def test_dense_kernel_permuted_for_nhwc_is_mapped_and_faithful(tmp_path):
    record = ports.diagnose_port(tmp_path, "flatten_head", [1, 3, 8, 8], lambda m: ports.flatten_port(m, permute_kernel=True), fix=False)
    assert record.errors == []
    assert record.verdict == "faithful"
    assert {p["keras_layer"]: p["mapped_by"] for p in record.mapping["pairs"]}["dense"] == BY_WEIGHTS_NHWC


def test_identical_weights_are_reported_as_ambiguous_and_mapped_by_order(tmp_path):
    record = ports.diagnose_port(tmp_path, "twin_bn", [1, 3, 8, 8], ports.twin_port, fix=False)
    pairs = {p["keras_layer"]: (p["module"], p["mapped_by"]) for p in record.mapping["pairs"]}
    assert pairs["bn0"] == ("1", BY_ORDER) and pairs["bn1"] == ("3", BY_ORDER)
    assert any("bn1" in note for note in record.mapping["ambiguities"])
    assert record.verdict == "faithful"


def test_fused_activation_is_mapped_and_checked(tmp_path):
    record = ports.diagnose_port(tmp_path, "flatten_head", [1, 3, 8, 8], ports.flatten_fused_port, fix=False)
    assert record.verdict == "faithful"
    fused = [p for p in record.mapping["pairs"] if p["mapped_by"] == "fused activation"]
    assert [(p["keras_layer"], p["module"]) for p in fused] == [("conv", "1")]


def test_conv_with_input_channels_reordered_is_mapped_by_weights(tmp_path):
    record = ports.diagnose_port(tmp_path, "focus_block", [1, 3, 64, 64], ports.focus_port_tf_order, fix=False)
    pairs = {p["keras_layer"]: (p["module"], p["mapped_by"]) for p in record.mapping["pairs"]}
    assert pairs["conv"] == ("conv", BY_WEIGHTS_PERMUTED)
    assert [(f.rule, f.keras_layer) for f in record.errors] == [("bn_epsilon", "bn")]
    assert record.errors[0].explained >= 0.9
