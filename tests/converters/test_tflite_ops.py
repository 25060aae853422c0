"""Reading the ops a .tflite file needs, and which onnx2tf replacement avoids a Select TF op."""
from __future__ import annotations

import pytest

from pipeline.converters.onnx2tf_v1 import PSEUDO_OPS, _builtin_notes, pseudo_ops_for
from pipeline.converters.tflite_ops import read_ops


def test_flex_erf_is_replaced_when_the_graph_has_erf():
    assert pseudo_ops_for(["FlexErf"], {"Conv", "Erf", "Mul"}) == (("erf",), [])


def test_a_flex_op_with_no_replacement_is_named():
    assert pseudo_ops_for(["FlexErf", "FlexAvgPool3D"], {"Erf", "AveragePool"}) == (("erf",), ["FlexAvgPool3D"])
    assert pseudo_ops_for(["FlexErf"], {"Gelu"}) == ((), ["FlexErf"])


def test_every_replacement_is_described():
    from pipeline.converters.onnx2tf_v1 import FLEX_SOURCES

    assert {name for sources in FLEX_SOURCES.values() for name in sources.values()} <= set(PSEUDO_OPS)


def test_builtin_notes_name_the_approximation_and_what_has_no_route():
    record = {"select_tf_ops": {"m.tflite": ["FlexErf"]}, "pseudo_ops": ["erf"], "approximations": [PSEUDO_OPS["erf"]],
              "no_builtin_route": ["FlexAvgPool3D"], "files": {"m.tflite": {"standard": True, "select_tf_file": "m_select_tf_ops.tflite"}},
              "error": None}
    notes = _builtin_notes(record)
    assert notes[0].startswith("m.tflite: Select TF ops ['FlexErf'] avoided by onnx2tf's builtin replacement ['erf'] (Erf as the Abramowitz")
    assert "kept as m_select_tf_ops.tflite" in notes[0]
    assert notes[1].startswith("no builtin route for ['FlexAvgPool3D']: TFLite has no builtin AvgPool3D")


@pytest.mark.slow
def test_read_ops_tells_select_tf_ops_from_builtin_ones(tmp_path):
    import tensorflow as tf

    @tf.function(input_signature=[tf.TensorSpec([1, 4], tf.float32)])
    def erf(x):
        return tf.math.erf(x) * 2.0

    converter = tf.lite.TFLiteConverter.from_concrete_functions([erf.get_concrete_function()], erf)
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS, tf.lite.OpsSet.SELECT_TF_OPS]
    path = tmp_path / "erf.tflite"
    path.write_bytes(converter.convert())
    ops = read_ops(path)
    assert ops.select_tf == ("FlexErf",)
    assert "MUL" in ops.builtin
    assert not ops.standard
    assert ops.to_json()["select_tf_ops"] == ["FlexErf"]


def test_io_shapes_reads_the_main_subgraphs_inputs_and_outputs(tmp_path):
    import tensorflow as tf

    from pipeline.converters.tflite_ops import io_shapes

    @tf.function(input_signature=[tf.TensorSpec([1, 4, 4, 3], tf.float32), tf.TensorSpec([2], tf.float32)])
    def model(x, y):
        return {"pooled": tf.nn.avg_pool2d(x, 2, 2, "VALID"), "sum": y + 1.0}

    path = tmp_path / "m.tflite"
    path.write_bytes(tf.lite.TFLiteConverter.from_concrete_functions([model.get_concrete_function()], model).convert())
    inputs, outputs = io_shapes(path)
    assert sorted(inputs) == [[1, 4, 4, 3], [2]] and sorted(outputs) == [[1, 2, 2, 3], [2]]


def test_a_builtin_file_laid_out_otherwise_is_named_and_not_swapped():
    record = {"select_tf_ops": {"m.tflite": ["FlexErf"]}, "pseudo_ops": ["erf"], "approximations": [PSEUDO_OPS["erf"]],
              "no_builtin_route": [], "error": None,
              "files": {"m.tflite": {"standard": False, "still_needs": [],
                                     "io_differs": [[[[1, 4, 4, 3]], [[1, 2, 2, 2, 3]]], [[[1, 4, 4, 3]], [[1, 3, 2, 2, 2]]]]}}}
    note = _builtin_notes(record)[0]
    assert note.startswith("m.tflite: the builtin-ops file made by onnx2tf's builtin replacement ['erf']")
    assert "[[1, 3, 2, 2, 2]]" in note and "the file with Select TF ops stays" in note
