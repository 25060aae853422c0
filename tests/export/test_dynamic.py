"""pipeline/export/dynamic.py and the export stage with dynamic dimensions: the axes stay symbolic in
model.onnx under the config's names, each extra audited shape gets its own input set, and a model that
cannot keep an axis dynamic ends with one line naming the input, the axis and torch.export's reason."""
from __future__ import annotations

import json

import onnx
import pytest
import torch
from onnx import TensorProto, helper
from torch import nn

from pipeline.artifacts.folder import ArtifactDir
from pipeline.config import load_config
from pipeline.errors import EXIT_USAGE
from pipeline.export import stage as export
from pipeline.export.dynamic import DynamicRequest, DynamicShapeError, capture, dynamic_shapes, static_axes
from pipeline.inputs import load_npz
from tests.support import run_cli, write_config


def fcn_config(folder, **keys):
    inputs = [{"name": "x", "shape": [1, 3, 16, 16], "low": -0.5, "high": 0.5, "dynamic": {0: "batch", 2: "height", 3: "width"}}]
    return load_config(write_config(folder / "fcn.yaml", "pipeline.zoo.fcn:build", inputs, samples=1,
                                    dims={"height": {"min": 8, "multiple_of": 4}, "width": {"min": 8, "multiple_of": 4}}, **keys))


@pytest.fixture(scope="module")
def fcn_export(tmp_path_factory):
    root = tmp_path_factory.mktemp("fcn")
    artifacts = ArtifactDir(root / "art")
    return artifacts, export.run(fcn_config(root), artifacts)


def test_dynamic_axes_stay_symbolic_under_the_configs_names(fcn_export):
    artifacts, record = fcn_export
    model = onnx.load(str(artifacts.onnx))
    dims = [[d.dim_param or d.dim_value for d in v.type.tensor_type.shape.dim] for v in model.graph.input]
    assert dims == [["batch", 3, "height", "width"]]
    assert record.exporter == "dynamo" and record.inputs[0].dynamic == {0: "batch", 2: "height", 3: "width"}
    assert record.dims["height"] == {"min": 8, "max": None, "multiple_of": 4}


def test_each_extra_shape_has_its_own_input_set_and_inputs_npz_keeps_the_example(fcn_export):
    artifacts, record = fcn_export
    assert record.shapes == [{"batch": 3}, {"batch": 2, "height": 12, "width": 20}]
    assert load_npz(artifacts.inputs)["x"].shape == (1 + 3, 1, 3, 16, 16)
    assert load_npz(artifacts.root / "inputs_batch3.npz")["x"].shape == (4, 3, 3, 16, 16)
    assert load_npz(artifacts.root / "inputs_batch2_height12_width20.npz")["x"].shape == (4, 2, 3, 12, 20)
    assert json.loads(artifacts.stage_record("export").read_text())["shapes"] == record.shapes


def test_a_model_that_bakes_batch_one_into_a_reshape_ends_with_one_line(tmp_path, capsys):
    config = write_config(tmp_path / "bad.yaml", "pipeline.zoo.fcn:build_batch_one",
                          [{"name": "x", "shape": [1, 3, 8, 8], "dynamic": {0: "batch"}}], samples=1)
    out = tmp_path / "art"
    assert run_cli("export", str(config), "--out", str(out)) == EXIT_USAGE
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert err.startswith("error: input 'x' axis 0 ('batch') cannot be dynamic: torch.export says: shape '[1, 256]' is invalid "
                          "for input of size 256*batch at fcn.py:")
    assert "in forward: return self.fc(torch.relu(self.conv(x)).reshape(1, 4 * 8 * 8))" in err
    assert not out.exists()  # no artifact written or changed


class BranchOnBatch(nn.Module):
    def forward(self, x, y):
        if x.shape[0] == 2:  # specializes the batch: the guard torch.export reports
            return x + y
        return x - y


def request_for(model, dynamic, dims=None):
    args = (torch.ones(2, 3), torch.ones(2, 3))
    return DynamicRequest(model, args, args, ["a", "b"], dynamic, dims or {})


def test_a_specializing_guard_is_named_with_its_source_line():
    with pytest.raises(DynamicShapeError) as caught:
        capture(request_for(BranchOnBatch(), [{0: "batch"}, {0: "batch"}]))
    message = str(caught.value)
    assert message.startswith("input 'a' axis 0 ('batch'), input 'b' axis 0 ('batch') cannot be dynamic: torch.export says: "
                              "Constraints violated (batch)!")
    assert "; guard Eq(batch, 2) at test_dynamic.py:" in message and "if x.shape[0] == 2:" in message


def test_a_model_torch_export_cannot_capture_at_all_is_not_blamed_on_the_dimensions():
    class DataDependent(nn.Module):
        def forward(self, x, y):
            return x if x.sum() > 0 else y  # torch.export cannot trace this at any shape

    with pytest.raises(Exception) as caught:
        capture(request_for(DataDependent(), [{0: "batch"}, {}]))
    assert not isinstance(caught.value, DynamicShapeError)


def test_constraints_become_dims_shared_across_inputs():
    request = request_for(BranchOnBatch(), [{0: "batch", 1: "width"}, {0: "batch"}], {"batch": {"min": 1, "max": 8}, "width": {"min": 4, "multiple_of": 4}})
    first, second = dynamic_shapes(request)
    assert first[0] is second[0] and first[0].__name__ == "batch" and (first[0].min, first[0].max) == (1, 8)
    assert "4*width_over_4" in str(first[1])


def test_a_fixed_axis_in_model_onnx_is_found(tmp_path):
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 3])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 3])
    out = helper.make_tensor_value_info("out", TensorProto.FLOAT, ["batch", 3])
    graph = helper.make_graph([helper.make_node("Add", ["x", "y"], ["out"])], "g", [x, y], [out])
    onnx.save(helper.make_model(graph), str(tmp_path / "m.onnx"))
    assert static_axes(tmp_path / "m.onnx", ["x", "y"], [{0: "batch"}, {0: "batch"}]) == ["input 'y' axis 0 ('batch') is fixed at 2"]
