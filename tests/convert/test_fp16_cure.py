"""pipeline/convert/fp16_cure.py: the cured ONNX copy, and when a cured fp16 file may ship."""
from __future__ import annotations

import json

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from pipeline.convert import fp16_cure, fp16_patch
from pipeline.lint import run_rules
from pipeline.lint.context import LintContext
from pipeline.lint.fp16 import FP16_TINY


def save(path, nodes, constants) -> onnx.ModelProto:
    inits = [numpy_helper.from_array(np.asarray(v, dtype=np.float32), name) for name, v in constants.items()]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 4])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 4])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    onnx.save(model, str(path))
    return model


def findings(path) -> list:
    return run_rules(LintContext(onnx.load(str(path))), only=["fp16_underflow"])


def run(path, x: np.ndarray) -> np.ndarray:
    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]


def test_layer_norm_epsilon_is_raised_to_the_smallest_normal(tmp_path):
    source = tmp_path / "ln.onnx"
    save(source, [helper.make_node("LayerNormalization", ["x", "s", "b"], ["y"], name="ln", epsilon=1e-12)],
         {"s": np.ones(4), "b": np.zeros(4)})
    (change,) = fp16_cure.cure_onnx(source, findings(source), tmp_path / "cured.onnx")
    assert (change.node, change.constant, change.new) == ("ln", "epsilon", FP16_TINY)
    assert change.old == pytest.approx(1e-12)
    cured = onnx.load(str(tmp_path / "cured.onnx"))
    assert helper.get_attribute_value(cured.graph.node[0].attribute[0]) == pytest.approx(FP16_TINY)
    assert np.float16(FP16_TINY) == FP16_TINY  # the new value survives float16 storage exactly
    assert findings(tmp_path / "cured.onnx") == []
    x = np.random.default_rng(0).normal(size=(2, 4)).astype(np.float32)
    np.testing.assert_allclose(run(tmp_path / "cured.onnx", x), run(source, x), atol=1e-3)


def test_shared_constant_is_cured_for_its_guarded_reader_only(tmp_path):
    """eps feeds Add -> Sqrt (cured) and a Mul (left as it is: another initializer is made for the Add)."""
    source = tmp_path / "rms.onnx"
    nodes = [helper.make_node("Mul", ["x", "x"], ["sq"], name="sq"),
             helper.make_node("Add", ["sq", "eps"], ["var"], name="add_eps"),
             helper.make_node("Sqrt", ["var"], ["std"], name="sqrt"),
             helper.make_node("Mul", ["std", "eps"], ["y"], name="scale")]
    save(source, nodes, {"eps": np.float32(1e-12)})
    (change,) = fp16_cure.cure_onnx(source, findings(source), tmp_path / "cured.onnx")
    assert (change.node, change.constant, change.values) == ("add_eps", "eps", 1)
    cured = onnx.load(str(tmp_path / "cured.onnx"))
    inputs = {node.name: list(node.input) for node in cured.graph.node}
    assert inputs["add_eps"] == ["sq", "eps__fp16_cured"] and inputs["scale"] == ["std", "eps"]


def test_two_guarded_readers_of_one_constant_share_one_cured_copy(tmp_path):
    """SwiftFormer: two epsilon Adds read one constant; a cured copy each gave the file a duplicate initializer."""
    source = tmp_path / "two.onnx"
    nodes = [helper.make_node("Mul", ["x", "x"], ["sq"], name="sq"),
             helper.make_node("Add", ["sq", "eps"], ["var1"], name="add_1"),
             helper.make_node("Sqrt", ["var1"], ["std1"], name="sqrt_1"),
             helper.make_node("Abs", ["x"], ["ab"], name="abs"),
             helper.make_node("Add", ["ab", "eps"], ["var2"], name="add_2"),
             helper.make_node("Sqrt", ["var2"], ["std2"], name="sqrt_2"),
             helper.make_node("Mul", ["std1", "std2"], ["y"], name="both")]
    save(source, nodes, {"eps": np.float32(1e-12)})
    changes = fp16_cure.cure_onnx(source, findings(source), tmp_path / "cured.onnx")
    assert sorted(c.node for c in changes) == ["add_1", "add_2"]
    cured = onnx.load(str(tmp_path / "cured.onnx"))
    onnx.checker.check_model(cured)
    assert [init.name for init in cured.graph.initializer].count("eps__fp16_cured") == 1
    x = np.random.default_rng(0).normal(size=(2, 4)).astype(np.float32)
    np.testing.assert_allclose(run(tmp_path / "cured.onnx", x), run(source, x), atol=1e-3)


def test_a_cure_that_cannot_be_made_leaves_the_uncured_file_with_a_note(tmp_path, monkeypatch):
    def broken(*args):
        raise ValueError("initializer name is not unique")

    monkeypatch.setattr(fp16_cure, "cure_onnx", broken)
    job = fp16_cure.CureJob(tmp_path / "m.onnx", tmp_path, [], None, None, {}, "PyTorch")
    assert fp16_cure.run(job) == ["fp16 cure not made (ValueError: initializer name is not unique); the uncured fp16 "
                                  "file ships"]


def test_epsilon_from_a_constant_node_is_cured_and_a_constant_denominator_is_not(tmp_path):
    source = tmp_path / "rms.onnx"
    eps = numpy_helper.from_array(np.array(1e-12, np.float32), "eps_value")
    nodes = [helper.make_node("Constant", [], ["eps"], name="eps_const", value=eps),
             helper.make_node("Mul", ["x", "x"], ["sq"], name="sq"),
             helper.make_node("Add", ["sq", "eps"], ["var"], name="add_eps"),
             helper.make_node("Sqrt", ["var"], ["std"], name="sqrt"),
             helper.make_node("Div", ["std", "tiny_scale"], ["y"], name="div")]
    save(source, nodes, {"tiny_scale": np.float32(1e-12)})
    assert {f.node for f in findings(source)} == {"add_eps", "div"}  # both flushed to 0 before Sqrt / as a denominator
    (change,) = fp16_cure.cure_onnx(source, findings(source), tmp_path / "cured.onnx")
    assert (change.node, change.constant) == ("add_eps", "eps")


def test_nothing_to_cure_writes_nothing(tmp_path):
    source = tmp_path / "ln.onnx"
    save(source, [helper.make_node("LayerNormalization", ["x", "s", "b"], ["y"], name="ln", epsilon=1e-6)],
         {"s": np.ones(4), "b": np.zeros(4)})
    assert [f.severity for f in findings(source)] == ["info"]  # a subnormal: no Inf, no cure
    assert fp16_cure.cure_onnx(source, findings(source), tmp_path / "cured.onnx") == []
    assert not (tmp_path / "cured.onnx").exists()


def test_measure_counts_non_finite_samples_where_the_reference_is_finite():
    reference = {"y": np.array([[1.0, 2.0], [0.0, np.nan], [3.0, 3.0]])}
    outputs = [{"y": np.array([1.5, 2.0])}, {"y": np.array([0.0, np.nan])}, {"y": np.array([np.nan, 3.0])}]
    errors = fp16_cure.measure(outputs, reference)
    assert errors.non_finite_samples == [2] and errors.max_abs == np.inf
    assert fp16_cure.measure(outputs[:2], {"y": reference["y"][:2]}).max_abs == pytest.approx(0.5)


def test_a_cured_file_ships_only_when_finite_and_no_worse():
    nan, fine, worse = fp16_cure.Errors(np.inf, [4]), fp16_cure.Errors(0.01, []), fp16_cure.Errors(0.02, [])
    assert fp16_cure.better(nan, fine)[0]
    assert fp16_cure.better(fine, fine)[0]
    assert fp16_cure.better(fine, worse) == (False, "the cured file's error 0.02 is larger than the uncured file's 0.01")
    assert fp16_cure.better(nan, nan) == (False, "the cured file still holds NaN or Inf on sample(s) [4]")


class _Converted:
    def __init__(self, path):
        self.tflite = {"fp16": path}


FINITE, NAN = np.zeros(4, np.float32), np.full(4, np.nan, np.float32)
PATCH = fp16_patch.Patch("eps", ("ADD (op 2) before RSQRT (op 3)",), 1e-12, FP16_TINY, 1, False)


def cure_job(tmp_path, monkeypatch, patch_step, uncured=FINITE, patched=FINITE) -> tuple[fp16_cure.CureJob, list]:
    """A cure job on a LayerNorm with eps 1e-12. `patch_step` stands in for fp16_patch.patch_flushed: a Patched
    (its file written when it patched something) or an exception to raise. The uncured, patched and converted
    files output `uncured`, `patched` and finite values; each conversion asked for is recorded."""
    source = tmp_path / "ln.onnx"
    save(source, [helper.make_node("LayerNormalization", ["x", "s", "b"], ["y"], name="ln", epsilon=1e-12)],
         {"s": np.ones(4), "b": np.zeros(4)})
    (tmp_path / "model_float16.tflite").write_bytes(b"uncured")

    def patch_flushed(fp16, fp32, out):
        if isinstance(patch_step, Exception):
            raise patch_step
        if patch_step.patches:
            out.write_bytes(b"patched")
        return patch_step

    monkeypatch.setattr(fp16_patch, "patch_flushed", patch_flushed)
    conversions = []

    def convert(onnx_path, out_dir):
        conversions.append(onnx_path.name)
        out_dir.mkdir(parents=True)
        (out_dir / "cured.tflite").write_bytes(b"converted")
        return _Converted(out_dir / "cured.tflite")

    outputs = {b"uncured": uncured, b"patched": patched, b"converted": FINITE}
    run_tflite = lambda path: [{"y": outputs[path.read_bytes()]}]  # noqa: E731
    reference = {"y": np.zeros((1, 4), np.float32)}
    return fp16_cure.CureJob(source, tmp_path, findings(source), convert, run_tflite, reference, "pytorch"), conversions


def cured(tmp_path) -> tuple[dict, bytes]:
    return json.loads((tmp_path / fp16_cure.RECORD).read_text()), (tmp_path / "model_float16.tflite").read_bytes()


def test_a_patched_file_ships_with_no_second_conversion(tmp_path, monkeypatch):
    job, conversions = cure_job(tmp_path, monkeypatch, fp16_patch.Patched([PATCH], 0, True), uncured=NAN)
    (said,) = fp16_cure.run(job)
    record, shipped = cured(tmp_path)
    assert conversions == [] and shipped == b"patched" and record["method"] == fp16_cure.PATCHED
    assert record["patches"][0]["tensor"] == "eps" and (tmp_path / fp16_cure.UNCURED).read_bytes() == b"uncured"
    assert "patched in the fp16 file" in said


def test_found_nothing_in_an_aligned_file_with_no_nan_converts_nothing(tmp_path, monkeypatch):
    job, conversions = cure_job(tmp_path, monkeypatch, fp16_patch.Patched([], 0, True))
    (said,) = fp16_cure.run(job)
    record, shipped = cured(tmp_path)
    assert conversions == [] and shipped == b"uncured" and record["method"] is None and record["after"] is None
    assert "found no flushed epsilon in model_float16.tflite (its ops aligned with the float32 file's)" in said
    assert "no second conversion" in said


@pytest.mark.parametrize("patch_step, uncured, patched, why", [
    (fp16_patch.Patched([], 0, False), FINITE, FINITE, "its ops did not align with the float32 file's"),
    (fp16_patch.Patched([], 0, True), NAN, FINITE, "found no flushed epsilon"),
    (fp16_patch.Patched([PATCH], 1, True), FINITE, FINITE, "1 flushed epsilon(s) cannot be raised in the file alone"),
    (ValueError("unknown field"), FINITE, FINITE, "not patched (ValueError: unknown field)"),
    (fp16_patch.Patched([PATCH], 0, True), NAN, NAN, "the patched file still holds NaN or Inf on sample(s) [0]"),
], ids=["not-aligned", "nan-with-nothing-found", "left", "patch-raised", "patched-still-nan"])
def test_what_the_patch_cannot_cure_is_converted_again(tmp_path, monkeypatch, patch_step, uncured, patched, why):
    job, conversions = cure_job(tmp_path, monkeypatch, patch_step, uncured, patched)
    fp16_cure.run(job)
    record, shipped = cured(tmp_path)
    assert conversions == [fp16_cure.CURED_ONNX] and record["method"] == fp16_cure.CONVERTED
    assert why in record["patch_note"] and record["shipped"] and shipped == b"converted"
