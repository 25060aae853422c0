"""pipeline/diagnose/dynamic.py: a port of a model with dynamic dimensions, checked at every shape."""
from __future__ import annotations

from tests import support

import keras
import pytest

from pipeline.artifacts.diagnose_record import DiagnoseRecord
from pipeline.artifacts.folder import ArtifactDir
from pipeline.config import load_config
from pipeline.diagnose.dynamic import port_axis
from pipeline.diagnose.run import PortLayout
from pipeline.diagnose.stage import DiagnoseRequest, diagnose
from pipeline.model.torch_model import build_model
from pipeline.report.sections.diagnose import headline, markdown_section
from tests.diagnose.ports import bn, conv

# TF 'same' on a stride-2, 3x3 conv pads as PyTorch's padding=1 at odd sizes (1 and 1) and not at even
# ones (0 and 1): a port right at the 33x33 example is wrong at 32x32.
DYNAMIC = {0: "batch", 2: "height", 3: "width"}


def same_padding_port(model, size: int | None):
    layers = [keras.Input((size, size, 3))]
    for i in (0, 3):
        layers += [conv(model[i], "same", f"conv{i}"), bn(model[i + 1], f"bn{i}", epsilon=1e-5), keras.layers.ReLU(name=f"relu{i}")]
    return keras.Sequential(layers)


def diagnosed(tmp_path, size: int | None, fix: bool = False) -> DiagnoseRecord:
    config = support.write_config(
        tmp_path / "stride2_dynamic.yaml", "tests.diagnose.models:stride2",
        [{"name": "x", "shape": [1, 3, 33, 33], "low": -0.5, "high": 0.5, "dynamic": DYNAMIC}],
        name="stride2_dynamic", samples=2, audit_shapes=[{"batch": 2, "height": 32, "width": 32}])
    source = load_config(config)
    port = tmp_path / "port.keras"
    same_padding_port(build_model(source), size).save(port)
    return diagnose(DiagnoseRequest(source, port, ArtifactDir.for_model("stride2_dynamic", str(tmp_path / "out")),
                                    fix=tmp_path / "fixed.keras" if fix else None))


def test_port_axes_follow_the_layout():
    assert [port_axis(a, 4, PortLayout(True)) for a in range(4)] == [0, 3, 1, 2]
    assert [port_axis(a, 4, PortLayout(False)) for a in range(4)] == [0, 1, 2, 3]
    assert port_axis(1, 2, PortLayout(True)) == 1  # a [batch, sequence] input is not moved


@pytest.mark.slow
def test_a_port_right_at_the_example_and_wrong_at_another_shape_is_not_faithful(tmp_path):
    record = diagnosed(tmp_path, None)
    assert record.before.within_floor  # 33x33: 'same' pads 1 and 1, as PyTorch does
    [check] = record.shapes
    assert check.shape == {"batch": 2, "height": 32, "width": 32} and check.where == "batch 2, height 32, width 32"
    assert check.before is not None and not check.before.within_floor and check.before.ratio > 100
    assert record.verdict == "not_faithful"
    # the padding rule run again with PyTorch traced at 32x32 names both convs there
    at = [(f.rule, f.keras_layer) for f in record.errors if f.message.startswith("at batch 2, height 32, width 32: ")]
    assert at == [("padding", "conv0"), ("padding", "conv3")]
    assert "not faithful at batch 2, height 32, width 32" in headline(record)
    assert any("at batch 2, height 32, width 32: NOT faithful" in line for line in markdown_section(record))
    assert DiagnoseRecord.from_json(record.to_json()).shapes == record.shapes


@pytest.mark.slow
def test_a_port_whose_input_fixes_a_dynamic_dimension_gets_an_error_naming_the_axis(tmp_path):
    record = diagnosed(tmp_path, 33)
    fixed = sorted((f.attribute, f.actual) for f in record.errors if f.rule == "dynamic_dim")
    assert fixed == [("axis 2", 33), ("axis 3", 33)]
    message = next(f.message for f in record.errors if f.attribute == "axis 2")
    assert "input 'x' axis 2 ('height')" in message and "Input with None there" in message
    [check] = record.shapes
    assert check.before is None and check.note == "not run: the port's Input fixes height, width"
    assert record.verdict == "not_faithful"


@pytest.mark.slow
def test_the_fix_of_a_port_wrong_at_another_shape_pads_explicitly(tmp_path):
    record = diagnosed(tmp_path, None, fix=True)
    assert record.fixed["verdict"] == "faithful"
    assert [c["before"]["within_floor"] for c in record.fixed["shapes"]] == [True]  # at 32x32 too
    fixed = keras.models.load_model(tmp_path / "fixed.keras")
    assert any(type(layer).__name__ == "ZeroPadding2D" for layer in fixed.layers)  # right at every size, 32 included
