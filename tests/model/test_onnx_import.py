"""pipeline/model/onnx_import.py: reading ONNX files made elsewhere, upgrading old opsets, finding inputs."""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from pipeline.errors import UsageError
from pipeline.inputs import TensorSpec
from pipeline.model.onnx_import import default_opset, import_onnx, input_specs, load_onnx, output_names

# Models exported by an old PyTorch at opset 6 (IR 3: initializers also listed as graph inputs).
BACKEND_DATA = Path(os.path.dirname(onnx.__file__)) / "backend" / "test" / "data" / "pytorch-converted"
OPSET6_CASES = ["test_Conv2d_strided", "test_BatchNorm2d_eval", "test_ZeroPad2d"]


def shipped_model(case: str) -> Path:
    return BACKEND_DATA / case / "model.onnx"


def expected_io(case: str) -> tuple[np.ndarray, np.ndarray]:
    data = BACKEND_DATA / case / "test_data_set_0"
    return (numpy_helper.to_array(onnx.load_tensor(str(data / "input_0.pb"))),
            numpy_helper.to_array(onnx.load_tensor(str(data / "output_0.pb"))))


@pytest.mark.parametrize("case", OPSET6_CASES)
def test_opset6_file_is_upgraded_checked_and_runs(case):
    assert default_opset(onnx.load(str(shipped_model(case)))) == 6  # the premise of this test

    result = import_onnx(shipped_model(case))

    assert result.opset == 13 and default_opset(result.model) == 13
    assert result.notes == ["upgraded from opset 6 to 13 with onnx.version_converter (ONNX Runtime only guarantees opset >= 7)"]
    onnx.checker.check_model(result.model, full_check=True)
    x, expected = expected_io(case)
    (spec,) = input_specs(result.model, [])
    session = ort.InferenceSession(result.model.SerializeToString(), providers=["CPUExecutionProvider"])
    (y,) = session.run(None, {spec.name: x})
    np.testing.assert_allclose(y, expected, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("case,shape", [("test_PReLU_1d_multiparam", [3, 1]), ("test_PReLU_2d_multiparam", [3, 1, 1]),
                                        ("test_PReLU_3d_multiparam", [3, 1, 1, 1])])
def test_an_opset6_prelu_slope_per_channel_keeps_its_meaning_through_the_upgrade(case, shape):
    """onnx's version converter keeps the slope [C], which opset 7 broadcasts from the last axis: ONNX Runtime
    refused these three files until the slope became [C, 1, ...]."""
    result = import_onnx(shipped_model(case))

    assert result.notes[1] == (f"PRelu node '2': slope '1' of shape [3] reshaped to {shape} for the upgrade (opset 6 "
                               "applies it per channel, axis 1; opset 7 would broadcast it from the last axis)")
    onnx.checker.check_model(result.model, full_check=True)
    x, expected = expected_io(case)
    session = ort.InferenceSession(result.model.SerializeToString(), providers=["CPUExecutionProvider"])
    np.testing.assert_array_equal(session.run(None, {"0": x})[0], expected)


def opset6_prelus(slope: np.ndarray | None, also_read: bool = False) -> onnx.ModelProto:
    """x [2, 3, 4] -> PRelu(x, s) -> PRelu(., s): one slope read by two nodes, a constant unless `slope` is None;
    `also_read`: an Identity reads it too, as it is, into a second output."""
    nodes = [helper.make_node("PRelu", ["x", "s"], ["y"], name="first"), helper.make_node("PRelu", ["y", "s"], ["z"], name="second")]
    inputs = [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 3, 4])]
    outputs = [helper.make_tensor_value_info("z", TensorProto.FLOAT, [2, 3, 4])]
    if slope is None:
        inputs.append(helper.make_tensor_value_info("s", TensorProto.FLOAT, [3]))
    if also_read:
        nodes.append(helper.make_node("Identity", ["s"], ["s_out"]))
        outputs.append(helper.make_tensor_value_info("s_out", TensorProto.FLOAT, [3]))
    graph = helper.make_graph(nodes, "g", inputs, outputs,
                              initializer=[] if slope is None else [numpy_helper.from_array(slope, "s")])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 6)], ir_version=4)


def test_a_slope_read_by_several_prelus_is_reshaped_once_and_a_slope_that_is_no_constant_is_named(tmp_path):
    slope = np.array([0.1, -0.5, 2.0], np.float32)
    onnx.save(opset6_prelus(slope), tmp_path / "shared.onnx")
    result = import_onnx(tmp_path / "shared.onnx")
    x = np.random.default_rng(0).standard_normal((2, 3, 4)).astype(np.float32)
    y = np.where(x >= 0, x, x * slope[:, None])
    session = ort.InferenceSession(result.model.SerializeToString(), providers=["CPUExecutionProvider"])
    np.testing.assert_allclose(session.run(None, {"x": x})[0], np.where(y >= 0, y, y * slope[:, None]), rtol=1e-6)
    assert [n for n in result.notes if "PRelu" in n] == [
        f"PRelu node '{name}': slope 's' of shape [3] reshaped to [3, 1] for the upgrade (opset 6 applies it per channel, "
        "axis 1; opset 7 would broadcast it from the last axis)" for name in ("first", "second")]
    assert [(i.name, list(i.dims)) for i in result.model.graph.initializer] == [("s", [3, 1])]  # both read it as [3, 1]

    onnx.save(opset6_prelus(slope, also_read=True), tmp_path / "read.onnx")
    result = import_onnx(tmp_path / "read.onnx")
    assert [(i.name, list(i.dims)) for i in result.model.graph.initializer] == [("s", [3]), ("s_3x1", [3, 1])]
    session = ort.InferenceSession(result.model.SerializeToString(), providers=["CPUExecutionProvider"])
    z, s_out = session.run(None, {"x": x})
    np.testing.assert_allclose(z, np.where(y >= 0, y, y * slope[:, None]), rtol=1e-6)
    np.testing.assert_array_equal(s_out, slope)

    onnx.save(opset6_prelus(None), tmp_path / "input.onnx")
    notes = import_onnx(tmp_path / "input.onnx").notes
    assert notes[1].startswith("PRelu node 'first': its slope 's' is not a constant, so its shape for opset 7's "
                               "broadcasting was not checked")


def test_a_slope_that_is_also_an_output_is_copied_under_a_name_no_other_value_has(tmp_path):
    slope = np.array([0.1, -0.5, 2.0], np.float32)
    model = opset6_prelus(slope)
    model.graph.output.append(helper.make_tensor_value_info("s", TensorProto.FLOAT, [3]))
    model.graph.initializer.append(numpy_helper.from_array(np.zeros((3, 1), np.float32), "s_3x1"))  # the copy's first name
    onnx.save(model, tmp_path / "output.onnx")
    result = import_onnx(tmp_path / "output.onnx")
    assert {i.name: list(i.dims) for i in result.model.graph.initializer} == {"s": [3], "s_3x1": [3, 1], "s_3x1_2": [3, 1]}
    session = ort.InferenceSession(result.model.SerializeToString(), providers=["CPUExecutionProvider"])
    x = np.random.default_rng(1).standard_normal((2, 3, 4)).astype(np.float32)
    z, s_out = session.run(None, {"x": x})
    y = np.where(x >= 0, x, x * slope[:, None])
    np.testing.assert_allclose(z, np.where(y >= 0, y, y * slope[:, None]), rtol=1e-6)
    np.testing.assert_array_equal(s_out, slope)


def test_a_slope_whose_input_rank_is_unknown_is_named_as_unchecked(tmp_path):
    model = opset6_prelus(np.array([0.1, -0.5, 2.0], np.float32))
    model.graph.input[0].type.tensor_type.ClearField("shape")
    del model.graph.output[:]
    model.graph.output.append(helper.make_tensor_value_info("z", TensorProto.FLOAT, None))
    onnx.save(model, tmp_path / "unranked.onnx")
    notes = import_onnx(tmp_path / "unranked.onnx").notes
    assert notes[1].startswith("PRelu node 'first': its slope 's' is [3] and the rank of its input 'x' is unknown, so its "
                               "shape for opset 7's broadcasting was not checked")


def test_a_prelu_inside_a_subgraph_is_named_as_unchecked(tmp_path):
    def branch(name: str) -> onnx.GraphProto:
        return helper.make_graph([helper.make_node("PRelu", ["x", "s"], [f"o_{name}"], name=f"prelu_{name}")], name, [],
                                 [helper.make_tensor_value_info(f"o_{name}", TensorProto.FLOAT, [2, 3, 4])])

    graph = helper.make_graph([helper.make_node("If", ["c"], ["z"], then_branch=branch("then"), else_branch=branch("else"))], "g",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 3, 4]),
                               helper.make_tensor_value_info("c", TensorProto.BOOL, [])],
                              [helper.make_tensor_value_info("z", TensorProto.FLOAT, [2, 3, 4])],
                              initializer=[numpy_helper.from_array(np.array([0.1, -0.5, 2.0], np.float32), "s")])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 6)], ir_version=4), tmp_path / "if.onnx")
    notes = import_onnx(tmp_path / "if.onnx").notes
    assert sorted(notes[1:]) == [f"PRelu node 'prelu_{name}' is inside a subgraph: its slope's shape for opset 7's broadcasting "
                                 "was not checked; re-export the model with opset >= 7" for name in ("else", "then")]


def test_upgrade_drops_initializers_from_the_graph_inputs():
    original = onnx.load(str(shipped_model("test_BatchNorm2d_eval")))
    assert len(original.graph.input) == 5  # x plus four BatchNorm parameters
    result = import_onnx(shipped_model("test_BatchNorm2d_eval"))
    assert [value.name for value in result.model.graph.input] == ["0"]
    assert result.model.ir_version >= 4


def test_current_opset_file_is_kept_as_is(tmp_path):
    path = tmp_path / "relu.onnx"
    onnx.save(relu_model(opset=17), str(path))
    result = import_onnx(path)
    assert (result.opset, result.notes, default_opset(result.model)) == (17, [], 17)


def test_truncated_file_is_not_a_readable_model(tmp_path):
    path = tmp_path / "truncated.onnx"
    path.write_bytes(shipped_model("test_Conv2d_strided").read_bytes()[:20])
    with pytest.raises(UsageError, match=r"truncated\.onnx: not a readable ONNX model \(\w+\); check that the file is complete"):
        import_onnx(path)


def test_random_bytes_are_not_a_readable_model(tmp_path):
    path = tmp_path / "noise.onnx"
    path.write_bytes(np.random.default_rng(0).bytes(256))
    with pytest.raises(UsageError, match=r"noise\.onnx: not a readable ONNX model"):
        load_onnx(path)


# --- input_specs on graphs built with onnx.helper ---------------------------

def relu_model(opset: int = 13) -> onnx.ModelProto:
    graph = helper.make_graph(
        [helper.make_node("Relu", ["x"], ["y"])], "relu",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])


def conv_model_with_dynamic_dims() -> onnx.ModelProto:
    """Conv over x[N, 3, H, 8] whose weight is an initializer also listed as an input (old IR style)."""
    weight = numpy_helper.from_array(np.ones((2, 3, 1, 1), dtype=np.float32), "w")
    graph = helper.make_graph(
        [helper.make_node("Conv", ["x", "w"], ["y"]), helper.make_node("Cast", ["ids"], ["ids_f"], to=TensorProto.FLOAT)],
        "conv",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3, "H", 8]),
         helper.make_tensor_value_info("w", TensorProto.FLOAT, [2, 3, 1, 1]),
         helper.make_tensor_value_info("ids", TensorProto.INT64, [5])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None),
         helper.make_tensor_value_info("ids_f", TensorProto.FLOAT, [5])],
        initializer=[weight],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])


def test_input_specs_exclude_initializers_keep_a_free_axis_0_and_set_other_free_dims_to_one():
    notes: list[str] = []
    specs = input_specs(conv_model_with_dynamic_dims(), notes)
    assert specs == [TensorSpec("x", (1, 3, 1, 8), "float32", -1.0, 1.0, {0: "N"}), TensorSpec("ids", (5,), "int64", 0, 2)]
    assert notes == ["input 'x' dimension 2 ('H') is dynamic; the audit's inputs set it to 1 and run no other size of it "
                     "(the ONNX route varies a free axis 0 only)"]


def test_input_specs_reject_an_unsupported_dtype():
    graph = helper.make_graph(
        [helper.make_node("Identity", ["x"], ["y"])], "double",
        [helper.make_tensor_value_info("x", TensorProto.DOUBLE, [2])],
        [helper.make_tensor_value_info("y", TensorProto.DOUBLE, [2])],
    )
    with pytest.raises(UsageError, match=r"input 'x' has dtype DOUBLE; supported: float32, float16, int64, int32, bool"):
        input_specs(helper.make_model(graph), [])


def test_output_names():
    assert output_names(conv_model_with_dynamic_dims()) == ["y", "ids_f"]
