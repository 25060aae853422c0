"""pipeline/audit/localize.py: the first divergent node, and whether its error is its own."""
from __future__ import annotations

from onnx import TensorProto, helper

from pipeline.model.graph import TensorOrder
from pipeline.audit.localize import localize


def chain_model():
    """x -> Relu(a) -> BatchNormalization(b) -> Relu(c) -> Identity(d)"""
    nodes = [
        helper.make_node("Relu", ["x"], ["a"], name="relu_a"),
        helper.make_node("BatchNormalization", ["a", "s", "bias", "m", "v"], ["b"], name="bn_b", epsilon=1e-3),
        helper.make_node("Relu", ["b"], ["c"], name="relu_c"),
        helper.make_node("Identity", ["c"], ["d"], name="id_d"),
    ]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 2])],
                              [helper.make_tensor_value_info("d", TensorProto.FLOAT, [1, 2])])
    return helper.make_model(graph)


def tensor(name, node, op, max_abs, exceeds, index):
    return {"index": index, "tensor": name, "node": node, "op_type": op, "module": None,
            "max_abs": max_abs, "ref_max_abs": 1.0, "exceeds": exceeds}


def pair(*tensors):
    return {"reference": "pytorch", "candidate": "onnxruntime", "tensors": list(tensors)}


ORDER = TensorOrder.of(chain_model())


def names(node):
    return {"bn_b": "block.bn", "relu_a": "block.act"}.get(node.name)


def test_first_tensor_beyond_tolerance_is_the_nodes_own_error():
    result = localize(pair(tensor("a", "relu_a", "Relu", 0.0, False, 0), tensor("b", "bn_b", "BatchNormalization", 0.08, True, 1),
                           tensor("c", "relu_c", "Relu", 0.08, True, 2)), ORDER, names, [])
    assert (result["found"], result["node"], result["module"], result["origin"]) == (True, "bn_b", "block.bn", "own")
    assert (result["error_in"], result["error_out"]) == (0.0, 0.08)
    assert result["attributes"] == {"epsilon": 0.0010000000474974513}
    assert "its output is off by 0.08; its inputs agree (max_abs 0), so the error appears at this node" in result["explanation"]


def test_with_unaligned_nodes_between_the_place_is_the_span_and_no_input_is_claimed_to_agree():
    result = localize(pair(tensor("a", "relu_a", "Relu", 0.0, False, 0), tensor("c", "relu_c", "Relu", 0.5, True, 2)),
                      ORDER, names, [])
    assert (result["node"], result["module"], result["origin"]) == ("bn_b", "block.bn", "span")
    assert result["unaligned_span"] == ["bn_b"] and result["diverging_node"] == "relu_c"
    assert "its inputs agree" not in result["explanation"]
    assert ("the 1 nodes before it, BatchNormalization node 'bn_b' (module block.bn) .. 'bn_b', have no aligned tensor "
            "and were not compared (the nearest aligned tensors before them agree (max_abs 0))") in result["explanation"]
    assert result["attributes"] == {"epsilon": 0.0010000000474974513}


def test_a_span_whose_search_stops_says_so_and_claims_nothing_about_inputs(monkeypatch):
    from pipeline.audit import localize as module

    monkeypatch.setattr(module, "MAX_SPAN", 1)
    result = localize(pair(tensor("d", "id_d", "Identity", 0.5, True, 3)), ORDER, names, [])
    assert (result["node"], result["origin"], result["span_complete"], result["error_in"]) == ("relu_c", "span", False, None)
    assert "1 or more (the search stopped after 1)" in result["explanation"]
    assert "no aligned tensor before them was compared" in result["explanation"]


def test_a_node_fed_by_the_model_inputs_alone_is_its_own_error():
    result = localize(pair(tensor("a", "relu_a", "Relu", 0.5, True, 0)), ORDER, names, [])
    assert (result["node"], result["origin"]) == ("relu_a", "own")
    assert "its inputs are the model inputs, so the error appears at this node" in result["explanation"]


def test_no_divergence_is_said():
    result = localize(pair(tensor("a", "relu_a", "Relu", 0.0, False, 0)), ORDER, names, [])
    assert result["found"] is False and result["node"] is None
    assert result["explanation"] == "no divergence beyond tolerance: none of the 1 aligned intermediate tensors exceeds it"


def test_with_noise_floors_no_divergence_is_said_against_the_floor():
    judged = {**tensor("a", "relu_a", "Relu", 1e-7, False, 0), "noise_floor": 1e-6, "noise_ratio": 0.1}
    result = localize(pair(judged), ORDER, names, [])
    assert result["explanation"].startswith("no divergence beyond the float32 noise floor")


def test_lint_findings_on_the_same_node_are_linked():
    finding = {"rule": "bn_epsilon", "severity": "error", "node": "bn_b", "module": "block.bn", "message": "epsilon is 0.001"}
    other = {"rule": "pads", "severity": "info", "node": "conv", "module": "block.conv", "message": "note"}
    result = localize(pair(tensor("b", "bn_b", "BatchNormalization", 0.08, True, 1)), ORDER, names, [finding, other])
    assert result["lint_findings"] == [finding]


def test_inputs_that_agree_with_a_large_max_abs_say_at_what_scale():
    large = {**tensor("a", "relu_a", "Relu", 2e4, False, 0), "ref_max_abs": 9.2e9}  # within rtol of a huge activation
    result = localize(pair(large, tensor("b", "bn_b", "BatchNormalization", 0.9, True, 1)), ORDER, names, [])
    assert "its inputs agree (max_abs 2e+04 at a scale of 9.2e+09)" in result["explanation"]
