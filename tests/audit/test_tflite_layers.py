"""pipeline/audit/tflite_layers.py: TFLite intermediates aligned with ONNX tensors by the converter's layer names."""
from __future__ import annotations

import json

import onnx
import pytest
from onnx import TensorProto, helper

from pipeline.audit.tflite_layers import _record, where_lines
from pipeline.model.graph import TensorOrder
from pipeline.runners.tensorflow import _layer_of
from tests.support import run_cli


def test_a_tflite_tensor_is_named_after_the_layer_of_the_last_op_fused_into_it():
    assert _layer_of("model/tf.nn.relu_3/Relu;model/tf.math.add_4/Add;model/tf.nn.convolution_4/convolution") == "tf.nn.relu_3"
    assert _layer_of("model_2/tf.concat_2/concat") == "tf.concat_2"
    assert _layer_of("serving_default_x:0") == "serving_default_x:0"


def _chain() -> TensorOrder:
    nodes = [helper.make_node("Relu", ["x"], ["a"], name="n_a"), helper.make_node("Add", ["a", "a"], ["b"], name="n_b"),
             helper.make_node("Sqrt", ["b"], ["c"], name="n_c"), helper.make_node("Relu", ["c"], ["d"], name="n_d")]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])],
                              [helper.make_tensor_value_info("d", TensorProto.FLOAT, [1])])
    return TensorOrder.of(helper.make_model(graph))


def test_the_first_non_finite_tensor_in_graph_order_is_named_with_its_node_and_module():
    totals = {"d": [1.0, 0.0, "zeros"], "a": [1.0, 1e-12, None], "c": [1.0, 0.0, "zeros"], "b": [1.0, 1e-2, None]}
    record = _record("tflite_fp16", totals, 4, lambda node: f"module.{node.name}", _chain())
    assert [r["tensor"] for r in record["tensors"]] == ["a", "b", "c", "d"]
    first = record["first_non_finite"]
    assert (first["node"], first["op_type"], first["module"], first["non_finite_on"]) == ("n_c", "Sqrt", "module.n_c", "zeros")
    assert "first NaN/Inf (on sample 'zeros') at node 'n_c' (Sqrt, module module.n_c)" in where_lines([record])[0]


def test_the_first_tensor_below_the_int8_budget_and_the_worst_first():
    totals = {"a": [1.0, 1e-4, None], "b": [1.0, 1.0, None], "c": [1.0, 0.5, None]}  # 40, 0 and 3 dB
    record = _record("tflite_int8", totals, 3, lambda node: None, _chain())
    assert record["first_below_budget"]["tensor"] == "b" and record["budget_snr_db"] == 15.0
    assert [r["tensor"] for r in record["worst"]] == ["b", "c", "a"]
    assert "first below 15 dB (SNR 0.0 dB) at node 'n_b' (Add, module unknown)" in where_lines([record])[0]


@pytest.mark.slow
def test_audit_with_layers_reads_each_tflite_file_layer_by_layer(seed_copy):
    assert run_cli("audit", "seed_ym", "--out", str(seed_copy), "--layers") == 0
    records = {r["backend"]: r for r in json.loads((seed_copy / "audit.json").read_text())["tflite_layers"]}
    assert set(records) == {"tflite_fp32", "tflite_fp16"}
    for record in records.values():
        assert record["compared"] >= 2 and record["first_non_finite"] is None
        assert all(r["snr_db"] is None or r["snr_db"] > 60 for r in record["tensors"])  # null: identical (inf in strict JSON)
        assert record["where"].startswith(f"{record['backend']}: {record['compared']} intermediate tensors compared")
