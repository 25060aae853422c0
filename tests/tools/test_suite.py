"""pipeline/tools/suite.py: case discovery and loading, the failure categories, one case's
failures kept inside its result, and (slow) a few shipped cases end to end."""
from __future__ import annotations

import json
import sys

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from pipeline.tools import suite
from pipeline.compare import tolerance_for
from pipeline.converters import get_converter
from pipeline.converters.base import ConversionResult, TFTensor
from pipeline.converters.onnx2tf_v2 import Onnx2TFV2
from pipeline.errors import ConversionError, RunnerError, UsageError, ValidationError
from pipeline.runners.base import Runner
from pipeline.tools.suite import (Case, CaseDataError, Converters, categorize, discover, is_permutation, load_case, parse_args,
                                  run_case, stage)
from pipeline.tools.suite_report import LAYOUT, NUMERIC, OLD_OPSET, OTHER, UNSUPPORTED, Failure, markdown, summarize

SMALL_CASES = ("test_Conv2d_strided", "test_BatchNorm2d_eval", "test_ZeroPad2d")


# --- discovery ------------------------------------------------------------------

def test_discovers_every_shipped_case_in_both_folders_sorted(onnx_test_data):
    cases = discover(onnx_test_data)
    by_folder = {folder: [c.name for c in cases if c.folder == folder] for folder in suite.FOLDERS}
    assert len(by_folder["pytorch-converted"]) == 82 and len(by_folder["pytorch-operator"]) == 35
    assert all(names == sorted(names) for names in by_folder.values())
    assert [c.folder for c in cases] == sorted(c.folder for c in cases)  # converted first, then operator
    assert all(c.model.is_file() for c in cases)


def test_filters_match_any_substring_of_the_case_id_and_limit_applies_after(onnx_test_data):
    picked = discover(onnx_test_data, filters=SMALL_CASES)
    assert sorted(c.name for c in picked) == sorted(SMALL_CASES)
    assert [c.id for c in discover(onnx_test_data, filters=("pytorch-operator/",), limit=2)] == [
        "pytorch-operator/test_operator_add_broadcast", "pytorch-operator/test_operator_add_size1_broadcast"]
    assert discover(onnx_test_data, filters=("no such case",)) == []


def test_folders_without_a_model_and_unknown_folders_are_ignored(tmp_path):
    (tmp_path / "pytorch-converted" / "test_a").mkdir(parents=True)
    (tmp_path / "pytorch-converted" / "test_a" / "model.onnx").write_bytes(b"")
    (tmp_path / "pytorch-converted" / "test_no_model").mkdir()
    (tmp_path / "node" / "test_b").mkdir(parents=True)
    (tmp_path / "node" / "test_b" / "model.onnx").write_bytes(b"")
    assert [c.id for c in discover(tmp_path)] == ["pytorch-converted/test_a"]


# --- loading --------------------------------------------------------------------

def write_case(root, model: onnx.ModelProto, inputs: list[np.ndarray], outputs: list[np.ndarray]) -> Case:
    data = root / "test_data_set_0"
    data.mkdir(parents=True)
    onnx.save(model, str(root / "model.onnx"))
    for kind, arrays in (("input", inputs), ("output", outputs)):
        for index, array in enumerate(arrays):
            (data / f"{kind}_{index}.pb").write_bytes(numpy_helper.from_array(array).SerializeToString())
    return Case("pytorch-converted", root.name, root)


def sum_model(count: int, with_initializer_input: bool) -> onnx.ModelProto:
    """Sum of `count` inputs and a weight; IR 3 style (the weight listed as an input too) when asked."""
    inputs = [helper.make_tensor_value_info(f"x{i}", TensorProto.FLOAT, [2]) for i in range(count)]
    weight = numpy_helper.from_array(np.ones(2, np.float32), "w")
    if with_initializer_input:
        inputs.insert(1, helper.make_tensor_value_info("w", TensorProto.FLOAT, [2]))
    node = helper.make_node("Sum", [f"x{i}" for i in range(count)] + ["w"], ["y"])
    graph = helper.make_graph([node], "g", inputs, [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2])], [weight])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 6)])


def test_inputs_are_named_in_graph_order_with_initializers_skipped_and_files_sorted_numerically(tmp_path):
    # Eleven inputs: input_10.pb must come after input_9.pb, not after input_1.pb.
    arrays = [np.full(2, i, np.float32) for i in range(11)]
    case = write_case(tmp_path / "test_sum", sum_model(11, with_initializer_input=True), arrays, [np.full(2, 56, np.float32)])
    data = load_case(case)
    assert list(data.inputs) == [f"x{i}" for i in range(11)]  # "w" is an initializer, not a feed
    assert all(data.inputs[f"x{i}"][0] == i for i in range(11))
    assert list(data.outputs) == ["y"] and data.outputs["y"].tolist() == [56.0, 56.0]
    assert data.opset == 6


def test_a_missing_output_file_is_a_case_data_error(tmp_path):
    case = write_case(tmp_path / "test_sum", sum_model(2, with_initializer_input=False), [np.ones(2, np.float32)] * 2, [])
    with pytest.raises(CaseDataError, match=r"test_data_set_0: 0 output_\*\.pb files for the graph's 1 outputs \['y'\]"):
        load_case(case)


def test_shipped_case_with_two_inputs_and_old_initializer_inputs(onnx_test_data):
    (case,) = discover(onnx_test_data, filters=("test_operator_add_broadcast",))
    data = load_case(case)
    assert [(name, a.shape, str(a.dtype)) for name, a in data.inputs.items()] == [("0", (2, 3), "float64"), ("1", (3,), "float64")]
    assert list(data.outputs) == ["2"]
    np.testing.assert_allclose(data.inputs["0"] + data.inputs["1"], data.outputs["2"])

    (bn,) = discover(onnx_test_data, filters=("pytorch-converted/test_BatchNorm2d_eval",))
    assert len(onnx.load(str(bn.model)).graph.input) == 5  # x plus four BatchNorm parameters
    assert list(load_case(bn).inputs) == ["0"]


# --- categories -----------------------------------------------------------------

@pytest.mark.parametrize("failure, category", [
    (Failure("import", "ValidationError", "onnx version converter could not upgrade the model to opset 13: x"), OLD_OPSET),
    (Failure("convert", "ConversionError", "onnx2tf failed on node 'n' (Upsample): opset 7 is not supported"), OLD_OPSET),
    (Failure("convert", "ConversionError", "onnx2tf failed on node 'n' (Foo): KeyError: 'x'; full log: l"), UNSUPPORTED),
    (Failure("convert", "ConversionError", "onnx2tf failed: boom; full log: /a/test_opset_9/convert.log"), UNSUPPORTED),
    (Failure("bind", "ConversionError", "the converted model has 1 inputs and 2 outputs, the ONNX model 1 and 1"), LAYOUT),
    (Failure("compare", None, "shape mismatch: reference [1, 3], candidate [3, 1] (tflite_fp32, output 'y')"), LAYOUT),
    (Failure("compare", None, "candidate has no such output (tf_saved_model, output 'y')"), LAYOUT),
    (Failure("compare", None, "layout unresolved: 5.00% of elements beyond atol + rtol*|reference|"), LAYOUT),
    (Failure("compare", None, "element order differs: the values are the expected ones in another order; 90%"), LAYOUT),
    (Failure("compare", None, "5.00% of elements beyond atol + rtol*|reference| (tflite_fp32, output 'y')"), NUMERIC),
    (Failure("compare", None, "candidate output holds NaN or Inf (tflite_fp32, output 'y')"), NUMERIC),
    (Failure("run", "RunnerError", "tflite_fp32: inference failed (ValueError: x)"), OTHER),
    (Failure("run", "RunnerError", "tflite_fp32: the .tflite file uses Select TF ops ['FlexAvgPool3D'] that need the Flex "
                                   "delegate, which standard TFLite runtimes (and this interpreter) lack"), UNSUPPORTED),
    (Failure("bind", "KeyError", "'y'", expected=False), OTHER),
    (Failure("convert", "SystemExit", "1", expected=False), OTHER),
    (Failure("load", "CaseDataError", "0 output_*.pb files"), OTHER),
])
def test_categorize(failure, category):
    assert categorize(failure) == category


def test_stage_records_typed_errors_and_anything_else_even_system_exit():
    with pytest.raises(suite.StageFailed) as typed:
        with stage("convert"):
            raise ConversionError("onnx2tf failed on node 'n' (Foo): boom\nsecond line")
    assert typed.value.failure == Failure("convert", "ConversionError", "onnx2tf failed on node 'n' (Foo): boom")
    with pytest.raises(suite.StageFailed) as exited:
        with stage("convert"):
            sys.exit(1)
    assert exited.value.failure == Failure("convert", "SystemExit", "1", expected=False)


def test_keyboard_interrupt_is_not_swallowed():
    with pytest.raises(KeyboardInterrupt), stage("run"):
        raise KeyboardInterrupt


# --- one case's failure stays in its result ---------------------------------------

class _FailingConverter:
    name = "failing"
    label = "failing"

    def __init__(self, error: BaseException) -> None:
        self.error = error

    def version(self) -> str:
        return "0"

    def convert(self, onnx_path, out_dir, log_path, options):
        assert onnx_path.is_file()  # the imported (upgraded) file
        raise self.error


def only_1x(converter) -> Converters:
    """The suite's converters with `converter` standing in for onnx2tf 1.x and no second converter."""
    return Converters({"onnx2tf": converter}, ("onnx2tf 2.x is not available: no side environment",))


ONE_X_STRATEGIES = ["default", "no-onnxsim", "keep-nchw-inputs", "auto-replacement-json", "rewrite-function-ops"]


@pytest.mark.parametrize("error, category, reason", [
    (ConversionError("onnx2tf failed on node 'n' (Foo): boom"), UNSUPPORTED, "convert: ConversionError: onnx2tf failed on node 'n' (Foo): boom"),
    (SystemExit(1), OTHER, "convert: SystemExit: 1"),
    (RuntimeError("first\nsecond"), OTHER, "convert: RuntimeError: first"),
])
def test_a_failing_conversion_is_recorded_not_raised(onnx_test_data, tmp_path, error, category, reason):
    (case,) = discover(onnx_test_data, filters=("test_Conv2d_strided",))
    result = run_case(case, tmp_path / "work", only_1x(_FailingConverter(error)))
    assert (result.status, result.category, result.opset, result.converter) == ("fail", category, 6, None)
    assert result.reason == f"failing 0 'default' and 4 more strategies: {reason}"
    # Every strategy of the convert stage's list had its turn; the rewrite found no function op to expand.
    assert [(t.strategy, t.outcome) for t in result.tried] == [(name, "raised") for name in ONE_X_STRATEGIES]
    assert result.tried[-1].failures[0].message.startswith("rewrite: no function op to expand")
    assert result.notes == ("upgraded from opset 6 to 13 with onnx.version_converter (ONNX Runtime only guarantees opset >= 7)",)
    assert onnx.load(str(tmp_path / "work" / "model.onnx")).opset_import[0].version == 13


def test_a_failing_upgrade_is_an_old_opset(onnx_test_data, tmp_path, monkeypatch):
    def refuse(model, target):
        raise ValidationError(f"onnx version converter could not upgrade the model to opset {target}: no adapter")

    monkeypatch.setattr("pipeline.model.onnx_import.upgrade", refuse)
    (case,) = discover(onnx_test_data, filters=("test_Conv2d_strided",))
    result = run_case(case, tmp_path / "work", only_1x(_FailingConverter(AssertionError("not reached"))))
    assert (result.status, result.category, result.failures[0].stage) == ("fail", OLD_OPSET, "import")


# --- each backend is checked, and its failure recorded, on its own -----------------

class _Converted:
    """Stands in for onnx2tf: a 'converted' test_Conv2d_strided with onnx2tf's NHWC shapes."""

    def __init__(self, name: str = "onnx2tf", version: str = "1.0") -> None:
        self.name, self.label, self._version = name, "fake", version

    def version(self) -> str:
        return self._version

    def convert(self, onnx_path, out_dir, log_path, options):
        return ConversionResult(
            saved_model=out_dir / "saved_model", keras=None, tflite={"fp32": out_dir / "model_float32.tflite"},
            inputs=[TFTensor("x", (2, 6, 6, 3))], outputs=[TFTensor("y", (2, 2, 2, 4))], converter=self.name, version="0",
        )


def fake_runner(name: str, outputs):
    """A Runner class for `name` whose infer() returns outputs(feed, path) (logical layout; the model's path
    tells one strategy's files from another's), or raises when `outputs` is None."""

    class _Fake(Runner):
        def __init__(self, path, io, input_specs, output_names, precision="fp32") -> None:
            super().__init__(input_specs, output_names)
            self.name, self.path = name, path

        def _activate_impl(self) -> None:
            if outputs is None:
                raise OSError("no such file")

        def _infer_impl(self, feed):
            return outputs(feed, self.path)

    return _Fake


@pytest.fixture
def conv2d_strided(onnx_test_data) -> Case:
    (case,) = discover(onnx_test_data, filters=("test_Conv2d_strided",))
    return case


def stored_only(monkeypatch) -> None:
    """The fake runners answer the stored inputs only: no generated samples for these cases."""
    monkeypatch.setattr(suite, "_generated", lambda case, imported, data, audit: None)


def test_a_backend_that_cannot_run_does_not_hide_the_other_ones_result(conv2d_strided, tmp_path, monkeypatch):
    expected = load_case(conv2d_strided).outputs
    stored_only(monkeypatch)
    monkeypatch.setattr(suite, "TFSavedModelRunner", fake_runner("tf_saved_model", lambda feed, path: expected))
    monkeypatch.setattr(suite, "TFLiteRunner", fake_runner("tflite_fp32", None))
    result = run_case(conv2d_strided, tmp_path / "work", only_1x(_Converted()))
    assert [(c.backend, c.verdict) for c in result.checks] == [("tf_saved_model", "pass"), ("tflite_fp32", "fail")]
    assert result.checks[1].reason == "could not run: tflite_fp32: could not load the model (OSError: no such file)"
    assert (result.status, result.category, result.max_abs) == ("fail", OTHER, 0.0)
    assert result.reason == "run: RunnerError: tflite_fp32: could not load the model (OSError: no such file)"


def test_expected_values_in_another_order_are_a_layout_failure(conv2d_strided, tmp_path, monkeypatch):
    expected = load_case(conv2d_strided).outputs
    # What a channel-last Flatten does: NHWC element order in an NCHW-shaped output.
    permuted = {name: np.ascontiguousarray(a.transpose(0, 2, 3, 1)).reshape(a.shape) for name, a in expected.items()}
    stored_only(monkeypatch)
    monkeypatch.setattr(suite, "TFSavedModelRunner", fake_runner("tf_saved_model", lambda feed, path: permuted))
    monkeypatch.setattr(suite, "TFLiteRunner", fake_runner("tflite_fp32", lambda feed, path: expected))
    result = run_case(conv2d_strided, tmp_path / "work", only_1x(_Converted()))
    assert [(c.backend, c.verdict) for c in result.checks] == [("tf_saved_model", "fail"), ("tflite_fp32", "pass")]
    assert (result.status, result.category) == ("fail", LAYOUT)
    assert result.reason.startswith("element order differs: the values are the expected ones in another order; ")
    assert result.reason.endswith("(tf_saved_model, output '3')")


# --- the ONNX route's own samples beside the stored ones -----------------------------

def ort_outputs(onnx_path):
    import onnxruntime as ort

    session = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    return lambda feed: dict(zip([o.name for o in session.get_outputs()], session.run(None, feed)))


def test_a_model_right_on_the_stored_inputs_and_wrong_on_the_generated_ones_fails(conv2d_strided, tmp_path, monkeypatch):
    data = load_case(conv2d_strided)
    stored_input = next(iter(data.inputs.values()))
    run = ort_outputs(conv2d_strided.model)
    # right where the input is the stored one; elsewhere ONNX Runtime's answer, off by 0.01 (a bug the stored
    # sample does not reach)
    wrong_elsewhere = lambda feed, path: (data.outputs if np.array_equal(next(iter(feed.values())), stored_input)  # noqa: E731
                                          else {k: v + 0.01 for k, v in run(feed).items()})
    monkeypatch.setattr(suite, "TFSavedModelRunner", fake_runner("tf_saved_model", wrong_elsewhere))
    monkeypatch.setattr(suite, "TFLiteRunner", fake_runner("tflite_fp32", lambda feed, path: run(feed) if not np.array_equal(
        next(iter(feed.values())), stored_input) else data.outputs))
    result = run_case(conv2d_strided, tmp_path / "work", only_1x(_Converted()))
    verdicts = [(c.backend, c.inputs, c.verdict) for c in result.checks]
    assert verdicts == [("tf_saved_model", "stored", "pass"), ("tf_saved_model", "generated", "fail"),
                        ("tflite_fp32", "stored", "pass"), ("tflite_fp32", "generated", "pass")]
    assert result.status == "fail" and "generated inputs against ONNX Runtime" in result.reason


@pytest.mark.slow
def test_stored_outputs_with_no_evidence_are_judged_on_the_generated_inputs(onnx_test_data, tmp_path, monkeypatch, no_network):
    """test_operator_view's stored input and output are zeros: alone they pass nothing (onnx2tf 1.x converts it)."""
    (case,) = discover(onnx_test_data, filters=("pytorch-operator/test_operator_view",))
    result = run_case(case, tmp_path / "work", only_1x(get_converter()))
    assert [(c.inputs, c.verdict) for c in result.checks] == [("stored", "inconclusive"), ("generated", "pass")] * 2
    assert result.status == "pass" and result.reason is None
    assert any(note.startswith("stored outputs: the reference output's magnitude 0") for note in result.notes)
    stored_only(monkeypatch)  # without the generated samples the same case is inconclusive
    assert run_case(case, tmp_path / "work", only_1x(get_converter())).status == "inconclusive"


def test_generated_inputs_onnx_runtime_cannot_run_leave_the_stored_data_to_judge(conv2d_strided, tmp_path, monkeypatch):
    class _Broken:
        def __init__(self, *args):
            raise RunnerError("onnxruntime: inference failed (InvalidArgument: bad index)")

    monkeypatch.setattr(suite, "OnnxRuntimeRunner", _Broken)
    expected = load_case(conv2d_strided).outputs
    monkeypatch.setattr(suite, "TFSavedModelRunner", fake_runner("tf_saved_model", lambda feed, path: expected))
    monkeypatch.setattr(suite, "TFLiteRunner", fake_runner("tflite_fp32", lambda feed, path: expected))
    result = run_case(conv2d_strided, tmp_path / "work", only_1x(_Converted()))
    assert result.status == "pass" and {c.inputs for c in result.checks} == {"stored"}
    assert "generated inputs not judged: ONNX Runtime could not run them (onnxruntime: inference failed " \
           "(InvalidArgument: bad index))" in result.notes


# --- the convert stage's order: 1.x's strategies, then 2.x ---------------------------

def two_converters(first, second) -> Converters:
    return Converters({"onnx2tf": first, "onnx2tf2": second})


def right_only_from(strategy: str, expected: dict):
    """Outputs for fake runners: the expected ones from `strategy`'s files (work/<strategy>/...), elsewhere the
    same values in another order (a channel-last Flatten)."""
    permuted = {name: np.ascontiguousarray(a.transpose(0, 2, 3, 1)).reshape(a.shape) for name, a in expected.items()}
    return lambda feed, path: expected if path.parent.name == strategy else permuted


def with_runners(monkeypatch, outputs) -> None:
    stored_only(monkeypatch)
    monkeypatch.setattr(suite, "TFSavedModelRunner", fake_runner("tf_saved_model", outputs))
    monkeypatch.setattr(suite, "TFLiteRunner", fake_runner("tflite_fp32", outputs))


def outcomes(result) -> list[tuple[str, str, str]]:
    return [(t.strategy, t.converter, t.outcome) for t in result.tried]


def test_when_every_1x_strategy_raises_2x_converts_and_its_files_are_judged(conv2d_strided, tmp_path, monkeypatch):
    with_runners(monkeypatch, right_only_from("onnx2tf-2", load_case(conv2d_strided).outputs))
    failing = _FailingConverter(ConversionError("onnx2tf failed on node 'n' (Conv): boom"))
    result = run_case(conv2d_strided, tmp_path / "work", two_converters(failing, _Converted("onnx2tf2", "2.6")))
    assert outcomes(result) == [(name, "failing 0", "raised") for name in ONE_X_STRATEGIES] + [("onnx2tf-2", "fake 2.6", "pass")]
    assert (result.status, result.converter, result.strategy, result.made_by) == ("pass", "fake 2.6", "onnx2tf-2", "fake 2.6 'onnx2tf-2'")
    assert result.reason == "failing 0 'default' and 4 more strategies: convert: ConversionError: onnx2tf failed on node 'n' (Conv): boom"


def test_a_1x_model_caught_wrong_is_replaced_by_2x_when_2x_passes(conv2d_strided, tmp_path, monkeypatch):
    with_runners(monkeypatch, right_only_from("onnx2tf-2", load_case(conv2d_strided).outputs))
    result = run_case(conv2d_strided, tmp_path / "work", two_converters(_Converted("onnx2tf", "1.29"), _Converted("onnx2tf2", "2.6")))
    assert outcomes(result) == [("default", "fake 1.29", "fail"), ("onnx2tf-2", "fake 2.6", "pass")]  # no other 1.x strategy
    assert (result.status, result.category, result.made_by) == ("pass", None, "fake 2.6 'onnx2tf-2'")
    assert [(c.backend, c.verdict) for c in result.checks] == [("tf_saved_model", "pass"), ("tflite_fp32", "pass")]
    assert result.reason.startswith("fake 1.29 'default': element order differs: ")


def test_when_2x_is_wrong_too_the_1x_files_stay_the_judged_ones(conv2d_strided, tmp_path, monkeypatch):
    with_runners(monkeypatch, right_only_from("no strategy", load_case(conv2d_strided).outputs))
    result = run_case(conv2d_strided, tmp_path / "work", two_converters(_Converted("onnx2tf", "1.29"), _Converted("onnx2tf2", "2.6")))
    assert outcomes(result) == [("default", "fake 1.29", "fail"), ("onnx2tf-2", "fake 2.6", "fail")]
    assert (result.status, result.category, result.made_by) == ("fail", LAYOUT, "fake 1.29 'default'")
    assert len(result.failures) == 2  # the judged (1.x) files' two backends; 2.x's first failure is in the reason
    assert "; fake 2.6 'onnx2tf-2': element order differs: " in result.reason


def test_a_1x_model_that_passes_is_not_converted_again(conv2d_strided, tmp_path, monkeypatch):
    with_runners(monkeypatch, right_only_from("default", load_case(conv2d_strided).outputs))
    second = _FailingConverter(AssertionError("onnx2tf 2.x must not run"))
    result = run_case(conv2d_strided, tmp_path / "work", two_converters(_Converted("onnx2tf", "1.29"), second))
    assert outcomes(result) == [("default", "fake 1.29", "pass")]
    assert (result.status, result.made_by, result.reason) == ("pass", "fake 1.29 'default'", None)


def test_without_the_side_environment_the_suite_runs_1x_and_says_2x_was_not_available(tmp_path, monkeypatch):
    monkeypatch.setenv("PIPELINE_ONNX2TF2_ENV", str(tmp_path / "no such venv"))
    converters = Converters.here()
    assert list(converters.available) == ["onnx2tf"]
    assert [s.converter for s in converters.strategies([])] == ["onnx2tf"] * 4  # no channel-first inputs: no keep-nchw
    (why,) = converters.unavailable
    assert why.startswith(f"onnx2tf 2.x is not available: no side environment at {tmp_path / 'no such venv'}")
    text = markdown(summarize([], 0.0, "all", True, (converters.labels(), converters.unavailable)))
    assert f"**Passes per converter: onnx2tf {get_converter().version()}: 0**" in text
    assert f"Not available: {why}; its strategies were not run." in text


def test_is_permutation_within_tolerance_only():
    tolerance = tolerance_for("tflite_fp32")
    ref = np.arange(6, dtype=np.float32).reshape(2, 3)
    assert is_permutation(ref, ref[:, ::-1] + 1e-6, tolerance)
    assert not is_permutation(ref, ref[:, ::-1] + 1e-2, tolerance)
    assert not is_permutation(ref, ref.reshape(3, 2), tolerance)  # another shape is a shape mismatch
    assert not is_permutation(np.array([np.nan, 1.0]), np.array([1.0, np.nan]), tolerance)


# --- command line ----------------------------------------------------------------

def test_filters_repeat_and_limit_must_be_positive(tmp_path, capsys):
    options = parse_args(["--filter", "a", "--filter", "b", "--limit", "2", "--out", str(tmp_path), "--markdown", str(tmp_path / "S.md")])
    assert (options.filters, options.limit, options.json_path, options.markdown) == (("a", "b"), 2, tmp_path / "suite.json", tmp_path / "S.md")
    assert options.selection == "--filter a --filter b --limit 2"
    with pytest.raises(SystemExit):
        parse_args(["--limit", "0"])
    assert "--limit must be at least 1" in capsys.readouterr().err


def test_no_matching_case_is_a_usage_error(tmp_path, capsys):
    assert suite.main(["--filter", "no such case", "--out", str(tmp_path), "--markdown", str(tmp_path / "S.md")]) == UsageError.exit_code
    assert capsys.readouterr().err.startswith("error: no backend test case matches --filter ['no such case']")
    assert not (tmp_path / "S.md").exists()


# --- end to end -------------------------------------------------------------------

@pytest.mark.slow
def test_small_cases_pass_end_to_end_and_reports_are_written(tmp_path, no_network):
    repo_markdown = suite.DEFAULT_MARKDOWN
    before = repo_markdown.stat().st_mtime_ns if repo_markdown.exists() else None
    argv = [arg for case in SMALL_CASES for arg in ("--filter", case)]
    assert suite.main([*argv, "--out", str(tmp_path / "out"), "--markdown", str(tmp_path / "SUITE.md")]) == 0

    record = json.loads((tmp_path / "out" / "suite.json").read_text())
    assert record["finished"] is True
    assert sorted(c["case"] for c in record["cases"]) == sorted(f"pytorch-converted/{c}" for c in SMALL_CASES)
    assert [c["status"] for c in record["cases"]] == ["pass"] * 3, [c["reason"] for c in record["cases"]]
    # SavedModel and TFLite fp32, each on the stored inputs and on the generated ones
    assert all(c["max_abs"] <= 1e-4 and [k["inputs"] for k in c["checks"]] == ["stored", "generated"] * 2 for c in record["cases"])
    assert record["overall"] == {"scope": "all", "cases": 3, "passed": 3, "failed": 0, "inconclusive": 0, "rate": 1.0}
    assert set(record["versions"]) >= {"onnx", "onnx2tf", "tensorflow"}
    markdown = (tmp_path / "SUITE.md").read_text()
    assert "**Pass rate: 3/3 (100.0%)**" in markdown
    one_x = f"onnx2tf {get_converter().version()}"
    assert "| pytorch-converted/test_ZeroPad2d | pass |  | " + one_x + " 'default' |" in markdown
    assert all((c["converter"], c["strategy"], len(c["tried"])) == (one_x, "default", 1) for c in record["cases"])
    assert f"**Passes per converter: {one_x}: 3" in markdown
    assert (repo_markdown.stat().st_mtime_ns if repo_markdown.exists() else None) == before


@pytest.mark.slow
@pytest.mark.skipif(Onnx2TFV2().available() is not None, reason=str(Onnx2TFV2().available()))
def test_a_case_onnx2tf_1x_cannot_convert_passes_with_2x(onnx_test_data, tmp_path, no_network):
    """Dilated Conv2d: onnx2tf 1.29 fails on it in every strategy; 2.x's files (input '0', 'arg_0' in its
    SavedModel's signature) are judged on the stored data."""
    (case,) = discover(onnx_test_data, filters=("pytorch-converted/test_Conv2d_dilated",))
    result = run_case(case, tmp_path / "work", Converters.here())
    assert [t.outcome for t in result.tried] == ["raised"] * 5 + ["pass"], result.reason
    assert (result.status, result.strategy) == ("pass", "onnx2tf-2")
    assert result.converter == f"onnx2tf {Onnx2TFV2().version()}" and result.max_abs <= 1e-4
