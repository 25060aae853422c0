"""The fp16 file judged against the model as float16 storage holds it (pipeline/model/fp16_storage.py)."""
from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from pipeline.model.fp16_storage import fp16_storage_copy, round_to_float16
from tests.support import run_cli, scale_fp16_weights


def _conv_bn(eps: float = 1e-5) -> onnx.ModelProto:
    rng = np.random.default_rng(0)
    inits = [numpy_helper.from_array(rng.normal(size=(4, 3, 3, 3)).astype(np.float32), "w"),
             numpy_helper.from_array(rng.normal(size=4).astype(np.float32), "b"),
             numpy_helper.from_array(rng.uniform(0.5, 1.5, 4).astype(np.float32), "gamma"),
             numpy_helper.from_array(rng.normal(size=4).astype(np.float32) * 0.1, "beta"),
             numpy_helper.from_array(rng.normal(size=4).astype(np.float32) * 0.1, "mean"),
             numpy_helper.from_array(rng.uniform(0.5, 1.5, 4).astype(np.float32), "var")]
    nodes = [helper.make_node("Conv", ["x", "w", "b"], ["c"], pads=[1, 1, 1, 1]),
             helper.make_node("BatchNormalization", ["c", "gamma", "beta", "mean", "var"], ["y"], epsilon=eps),
             helper.make_node("LayerNormalization", ["y", "gamma4", "beta4"], ["z"], axis=-1, epsilon=1e-12)]
    inits += [numpy_helper.from_array(np.ones(8, np.float32), "gamma4"), numpy_helper.from_array(np.zeros(8, np.float32), "beta4")]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 8, 8])],
                              [helper.make_tensor_value_info("z", TensorProto.FLOAT, [1, 4, 8, 8])], inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def test_batchnorm_is_folded_into_the_conv_then_every_constant_is_rounded_through_float16():
    model = _conv_bn()
    stored = fp16_storage_copy(model)
    ops = [n.op_type for n in stored.graph.node]
    assert ops == ["Conv", "LayerNormalization"]
    inits = {i.name: numpy_helper.to_array(i) for i in stored.graph.initializer}
    assert not {"gamma", "beta", "mean", "var"} & set(inits)  # unused after the fold
    original = {i.name: numpy_helper.to_array(i) for i in model.graph.initializer}
    scale = original["gamma"] / np.sqrt(original["var"] + np.float32(1e-5))
    weight = next(v for k, v in inits.items() if k.endswith("folded_weight"))
    np.testing.assert_array_equal(weight, round_to_float16(original["w"] * scale.reshape(-1, 1, 1, 1)))
    assert all(np.array_equal(v, round_to_float16(v)) for v in inits.values())
    epsilon = next(a.f for a in stored.graph.node[1].attribute if a.name == "epsilon")
    assert epsilon == 0.0  # 1e-12 is below float16's smallest subnormal, as the file stores it


def test_the_stored_model_runs_like_the_original_within_float16_rounding():
    import onnxruntime as ort

    model = _conv_bn()
    x = np.random.default_rng(1).normal(size=(1, 3, 8, 8)).astype(np.float32)
    run = lambda m: ort.InferenceSession(m.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]  # noqa: E731
    original, stored = run(model), run(fp16_storage_copy(model))
    assert not np.array_equal(original, stored)
    np.testing.assert_allclose(stored, original, rtol=0, atol=0.05)


@pytest.mark.slow
def test_a_correct_fp16_file_passes_and_one_weight_scaled_by_1_02_fails_on_tflite_fp16_alone(seed_copy):
    first = run_cli("audit", "seed_ym", "--out", str(seed_copy))
    assert first == 0
    scale_fp16_weights(seed_copy / "model_float16.tflite", 1.02)
    code = run_cli("audit", "seed_ym", "--out", str(seed_copy))
    import json

    audit = json.loads((seed_copy / "audit.json").read_text())
    verdicts = {c["candidate"]: c["verdict"] for c in audit["comparisons"]}
    assert code == 1 and verdicts.pop("tflite_fp16") == "fail"
    assert set(verdicts.values()) == {"pass"}
    fp16 = next(c for c in audit["comparisons"] if c["candidate"] == "tflite_fp16")
    assert fp16["rule"] == "fp16 storage floor" and fp16["snr_db"] > 30  # the old budget would have passed it
    assert audit["fp16_oracle"]["available"] is True


def test_values_beyond_float16_are_clamped_as_the_converter_stores_them_and_tiny_ones_flush_or_go_subnormal():
    values = np.array([-1e9, np.finfo(np.float32).min, 1e5, 1e-12, 1e-6, -np.inf], np.float32)
    stored = round_to_float16(values)
    assert stored[:3].tolist() == [-65504.0, -65504.0, 65504.0]
    assert stored[3] == 0.0 and stored[5] == -np.inf
    assert stored[4] != values[4] and abs(stored[4] - values[4]) < 6e-8  # a subnormal: one step is 5.96e-08
