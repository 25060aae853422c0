"""pipeline/audit/oracle_check.py and the audit stage's use of it: a float64 oracle that parts from the
float32 reference beyond rounding is not used, says why and where, and decides no verdict."""
from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

from pipeline.artifacts.folder import ArtifactDir
from pipeline.audit import oracle_check, stage
from pipeline.compare import Tolerance, compare_arrays
from pipeline.audit.judge import Evidence, judge
from pipeline.audit.oracle_check import RoundingBound, check
from pipeline.inputs import TensorSpec
from pipeline.runners import onnxrt
from tests.runners.test_onnxrt import SHAPE, old_opset_head

RNG = np.random.default_rng(0)
TRUTH = RNG.normal(size=(3, 1, 40)) * 20  # stacked by sample
DEEP = RoundingBound(nodes=100, fan_in=9 * 64)  # the size of configs/deep_convbn.yaml


def test_a_correct_float32_run_is_within_the_bound_even_far_beyond_the_measured_floor():
    # NOISE.md: the deep network's float32 error is 2e-6 of its scale; ten times that still passes
    reference = (TRUTH * (1 + 2e-5 * RNG.choice([-1, 1], size=TRUTH.shape))).astype(np.float32)
    assert check("PyTorch", {"y": reference}, {"y": TRUTH}, DEEP) is None


def test_an_oracle_that_normalizes_over_another_axis_is_rejected_with_the_output_and_the_bound():
    logits = RNG.normal(size=(2, 1, 1000, 1, 1))
    right = np.exp(logits) / np.exp(logits).sum(axis=2, keepdims=True)
    wrong = np.ones_like(right)  # a softmax over a length-1 axis
    rejected = check("ONNX Runtime", {"probs": right.astype(np.float32)}, {"probs": wrong}, DEEP)
    assert rejected is not None
    assert rejected.reason.startswith("the float64 oracle parts from ONNX Runtime float32 on 'probs' (sample 0) by ")
    assert "more than float32 rounding can explain" in rejected.reason and "100 nodes" in rejected.reason


def test_an_oracle_of_another_shape_is_rejected():
    rejected = check("PyTorch", {"y": TRUTH.astype(np.float32)}, {"y": TRUTH[:, :, :10]}, DEEP)
    assert rejected is not None and "shapes [1, 40] and [1, 10]" in rejected.reason


def test_an_ill_conditioned_output_may_move_as_far_as_the_perturbed_oracle_does():
    reference = (TRUTH + 0.5).astype(np.float32)  # beyond the depth bound (0.0023 of the scale, 60)
    moved = [TRUTH + 0.1]  # a one-rounding perturbation moves the oracle by 0.1
    assert check("PyTorch", {"y": reference}, {"y": TRUTH}, DEEP) is not None
    assert check("PyTorch", {"y": reference}, {"y": TRUTH}, DEEP, {"y": moved}) is None


@pytest.fixture
def onnx_route(tmp_path):
    """An ONNX-route artifact folder around an opset-9 Conv -> Softmax head, with ONNX Runtime's outputs."""
    artifacts = ArtifactDir(tmp_path)
    old_opset_head(artifacts.onnx, "Softmax", None)
    export = SimpleNamespace(inputs=[TensorSpec("x", tuple(SHAPE), "float32")], outputs=["y"], reference="onnxruntime")
    feeds = [{"x": RNG.normal(size=SHAPE).astype(np.float32) * 3} for _ in range(2)]
    runner = onnxrt.OnnxRuntimeRunner(artifacts.onnx, export.inputs, ["y"])
    from pipeline.compare import run_all

    return artifacts, export, feeds, run_all([runner], feeds)


def onnx_oracle(artifacts, export, feeds, results):
    """The audit's ONNX-route oracle at the example shape alone."""
    sets = [stage.InputSet({}, "the example shape", feeds)]
    return stage._onnx_oracles(SimpleNamespace(config=None), artifacts, export, sets, [results])[0]


def test_the_onnx_routes_oracle_is_used_when_it_agrees(onnx_route):
    artifacts, export, feeds, results = onnx_route
    oracle = onnx_oracle(artifacts, export, feeds, results)
    assert oracle.available and oracle.rejected is None and oracle.backend == "onnxruntime_fp64"


def test_a_broken_float64_run_is_rejected_with_where_it_parts_and_decides_no_verdict(onnx_route, monkeypatch):
    artifacts, export, feeds, results = onnx_route
    monkeypatch.setattr(onnxrt, "with_2d_softmax", lambda model: model)  # the evaluator's opset-13 Softmax, as before
    oracle = onnx_oracle(artifacts, export, feeds, results)

    assert not oracle.available and oracle.backend is None and not oracle.sample_floors
    assert "the float64 oracle (onnx's reference evaluator) was not used" in oracle.reason
    assert "the first tensor where they part: 'y' (node head, Softmax" in oracle.reason
    assert oracle.rejected["first_divergence"]["node"] == "head"
    assert oracle.to_json()["rejected"]["reason"].startswith("the float64 oracle parts from ONNX Runtime float32 on 'y'")

    # a candidate that makes the oracle's mistake is judged against ONNX Runtime, not blessed by the oracle
    reference = results["onnxruntime"]["y"]
    wrong = np.ones_like(reference)
    raw = compare_arrays(reference, wrong, Tolerance(1e-4, 1e-4), ("onnxruntime", "keras", "y"))
    assert judge(raw, reference, wrong, Evidence(oracle)).verdict == "fail"


def test_where_it_parts_names_the_first_node_in_graph_order(onnx_route, monkeypatch):
    artifacts, export, feeds, _ = onnx_route
    monkeypatch.setattr(onnxrt, "with_2d_softmax", lambda model: model)
    where = oracle_check.first_divergence(artifacts.onnx, export.inputs, feeds[0], artifacts.root)
    assert (where["tensor"], where["op_type"]) == ("y", "Softmax")


def test_the_fan_in_is_read_from_weights_made_at_run_time_too():
    """onnx's light test models make their weights with ConstantOfShape: no stored tensor has their shape."""
    from onnx import TensorProto, helper, numpy_helper

    shape = numpy_helper.from_array(np.array([4, 8, 3, 3], np.int64), "w_shape")
    nodes = [helper.make_node("ConstantOfShape", ["w_shape"], ["w"], value=helper.make_tensor("v", TensorProto.FLOAT, [1], [0.1])),
             helper.make_node("Conv", ["x", "w"], ["y"], pads=[1, 1, 1, 1])]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 8, 5, 5])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4, 5, 5])], [shape])
    bound = RoundingBound.of(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)]))
    assert (bound.nodes, bound.fan_in) == (2, 72)
