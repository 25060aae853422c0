"""The onnx2tf 2.x adapter: its interface, option mapping and "not available" path run anywhere; the real
conversions (marked slow) need the side environment .venv312, which `make venv` / `make test` create when a
Python 3.12 is found, so they skip only where there is none."""
from __future__ import annotations

import ast
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from pipeline.converters import ConversionOptions, get_converter
from pipeline.converters.base import Int8Request
from pipeline.converters.onnx2tf_v1 import Onnx2TFV1
from pipeline.converters import onnx2tf_v2_child as child
from pipeline.converters.onnx2tf_v2 import CHILD, Onnx2TFV2, failure_message, request
from pipeline.runners import tensorflow as tf_runners
from pipeline.errors import ConversionError

SIDE = Onnx2TFV2()
needs_side_environment = pytest.mark.skipif(SIDE.available() is not None, reason=str(SIDE.available()))


def gather_elements(path: Path) -> Path:
    """DeBERTa-v2's relative-position gather in small: scores from one head projection, a GatherElements with
    constant indices on the last axis, added back. onnx2tf 1.29 fails on it ("Output tensors of a Functional
    model must be the output of a TensorFlow `Layer`"), as it does on DeBERTa-v2 itself."""
    rng = np.random.default_rng(0)
    positions = np.clip(np.arange(6)[:, None] - np.arange(6)[None, :] + 3, 0, 5).reshape(1, 1, 6, 6).repeat(2, 1)
    initializers = [numpy_helper.from_array(rng.standard_normal((8, 8)).astype(np.float32), "w"),
                    numpy_helper.from_array(positions.astype(np.int64), "pos"),
                    numpy_helper.from_array(np.array([1, 6, 2, 4], np.int64), "shape")]
    nodes = [helper.make_node("MatMul", ["x", "w"], ["q"], name="q_proj"),
             helper.make_node("Reshape", ["q", "shape"], ["q4"], name="split_heads"),
             helper.make_node("Transpose", ["q4"], ["qh"], name="heads_first", perm=[0, 2, 1, 3]),
             helper.make_node("Transpose", ["qh"], ["kt"], name="k_t", perm=[0, 1, 3, 2]),
             helper.make_node("MatMul", ["qh", "kt"], ["s"], name="scores"),
             helper.make_node("GatherElements", ["s", "pos"], ["g"], name="c2p_gather", axis=3),
             helper.make_node("Add", ["s", "g"], ["y"], name="add_bias")]
    graph = helper.make_graph(nodes, "gather_elements", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 6, 8])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 2, 6, 6])], initializer=initializers)
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))
    return path


def test_both_adapters_are_registered_under_one_interface():
    for name, kind in (("onnx2tf", Onnx2TFV1), ("onnx2tf2", Onnx2TFV2)):
        converter = get_converter(name)
        assert isinstance(converter, kind) and converter.name == name
        assert converter.label == "onnx2tf"
        for member in ("version", "available", "convert", "layer_model", "warm_up"):
            assert hasattr(converter, member), f"{name} lacks {member}"
    with pytest.raises(KeyError, match="unknown converter 'onnx2tf3'; available: onnx2tf, onnx2tf2"):
        get_converter("onnx2tf3")


def test_without_the_side_environment_it_says_what_to_do_and_runs_nothing(tmp_path):
    converter = Onnx2TFV2(tmp_path / "absent")
    assert converter.version() == "not installed"
    assert converter.available().startswith(f"onnx2tf 2.x is not available: no side environment at {tmp_path / 'absent'} "
                                            "(`make venv` creates it")
    out = tmp_path / "out"
    with pytest.raises(ConversionError, match=r"onnx2tf 2.x is not available: .*PYTHON312="):
        converter.convert(gather_elements(tmp_path / "m.onnx"), out, tmp_path / "convert.log", ConversionOptions())
    assert not out.exists()


def crashing_side_environment(root: Path) -> Onnx2TFV2:
    """A side environment whose python dies of SIGSEGV unless TensorFlow's oneDNN kernels are off."""
    (root / "lib/python3.12/site-packages/onnx2tf-2.0.0.dist-info").mkdir(parents=True)
    python = root / "bin" / "python"
    python.parent.mkdir()
    python.write_text('#!/bin/sh\n[ "$TF_ENABLE_ONEDNN_OPTS" = "0" ] && exit 1\nkill -SEGV $$\n')
    python.chmod(0o755)
    return Onnx2TFV2(root)


def test_a_crash_of_the_2x_process_is_a_crash_the_convert_stage_retries_without_onednn(tmp_path):
    from pipeline.convert.isolate import Limits, run_isolated
    from pipeline.convert.stage import WITHOUT_ONEDNN
    from pipeline.errors import ConversionCrashed

    converter, model = crashing_side_environment(tmp_path / "env"), gather_elements(tmp_path / "m.onnx")
    args = (model, tmp_path / "out", tmp_path / "convert.log", ConversionOptions())
    with pytest.raises(ConversionCrashed, match=r"the onnx2tf 2.0.0 process crashed in native code \(signal 11, SIGSEGV\)"):
        converter.convert(*args)
    # through the conversion child, as the convert stage runs it: still a crash, so it converts again without oneDNN
    with pytest.raises(ConversionCrashed, match=r"^strategy 'onnx2tf-2': the onnx2tf 2.0.0 process crashed"):
        run_isolated(converter.convert, args, Limits(8 * 2**30, 60), "strategy 'onnx2tf-2'")
    with pytest.raises(ConversionError, match=r"ended without an answer \(exit code 1\)") as raised:
        run_isolated(converter.convert, args, Limits(8 * 2**30, 60), "strategy 'onnx2tf-2'", WITHOUT_ONEDNN)
    assert not isinstance(raised.value, ConversionCrashed)


def test_the_side_environment_may_be_named_elsewhere(tmp_path, monkeypatch):
    monkeypatch.setenv("PIPELINE_ONNX2TF2_ENV", str(tmp_path / "elsewhere"))
    assert Onnx2TFV2().env == tmp_path / "elsewhere"


def test_options_map_to_onnx2tf_2_arguments(tmp_path):
    source = gather_elements(tmp_path / "m.onnx")
    options = ConversionOptions(keep_nchw_inputs=("x",), use_onnxsim=False, param_replacement_file=tmp_path / "p.json",
                                pseudo_ops=("erf",), outputs=("saved_model", "tflite_fp32"))
    made = request(source, tmp_path, options)
    kwargs = made["kwargs"]
    assert kwargs["tflite_backend"] == "flatbuffer_direct" and kwargs["flatbuffer_direct_output_saved_model"] is True
    assert kwargs["output_keras_v3"] is False  # not asked for
    assert kwargs["not_use_onnxsim"] is True
    assert kwargs["keep_ncw_or_nchw_or_ncdhw_input_names"] == ["x"]
    assert kwargs["param_replacement_file"] == str(tmp_path / "p.json")
    assert kwargs["replace_to_pseudo_operators"] == ["erf"]
    assert Path(kwargs["input_onnx_file_path"]).read_bytes() == source.read_bytes()  # a copy: onnxsim rewrites in place
    assert Path(kwargs["input_onnx_file_path"]) != source
    assert (made["onnx_inputs"], made["onnx_outputs"]) == (["x"], ["y"])  # initializers are not inputs
    defaults = request(source, tmp_path, ConversionOptions())["kwargs"]
    assert defaults["output_keras_v3"] is True and defaults["not_use_onnxsim"] is False
    assert defaults["keep_ncw_or_nchw_or_ncdhw_input_names"] is None and defaults["replace_to_pseudo_operators"] is None


def test_an_option_2x_cannot_take_is_refused_by_name(tmp_path):
    with pytest.raises(ConversionError, match=r"does not map \['auto_replacement'\].*use an onnx2tf 1.x strategy"):
        request(gather_elements(tmp_path / "m.onnx"), tmp_path, ConversionOptions(auto_replacement=True))


def test_a_2x_failure_names_version_node_and_op(tmp_path):
    said = ("NotImplementedError: flatbuffer_direct validation failed: op=Bernoulli node=bern_1 "
            "reason_code=unsupported_onnx_op message=not supported")
    assert failure_message("2.6.9", said, tmp_path / "convert.log") == (
        f"onnx2tf 2.6.9 failed on node 'bern_1' (Bernoulli): {said}; full log: {tmp_path / 'convert.log'}")
    exported = ("ModelIRSavedModelExportError: flatbuffer_direct_output_saved_model does not support CUSTOM ops. Found 1 "
                "CUSTOM node(s): customCode=ONNX_UNIQUE onnxOp=Unique onnxNodeName=uniq_1")
    assert failure_message("2.6.9", exported, tmp_path / "l").startswith("onnx2tf 2.6.9 failed on node 'uniq_1' (Unique): ")
    gelu = ("ModelIRSavedModelExportError: ModelIR->SavedModel exporter does not support some op types in this model. "
            "unsupported_op_types=['GELU']")
    assert failure_message("2.6.9", gelu, tmp_path / "l") == f"onnx2tf 2.6.9 failed: {gelu}; full log: {tmp_path / 'l'}"


def test_the_child_imports_only_the_standard_library_at_its_top():
    """It runs in the side environment, which has onnx2tf and TensorFlow but none of the pipeline's packages."""
    tree = ast.parse(CHILD.read_text())
    top = {alias.name.split(".")[0] for node in tree.body if isinstance(node, ast.Import) for alias in node.names}
    top |= {node.module.split(".")[0] for node in tree.body if isinstance(node, ast.ImportFrom) and node.module}
    assert top - {"__future__"} <= set(sys.stdlib_module_names), top


@pytest.mark.parametrize("name, key", [("x", "x"), ("0", "arg_0"), ("input.1", "input_1"), ("7:x", "arg_7_x"), ("", "arg_")])
def test_an_input_name_that_is_no_python_identifier_is_keyed_as_tf_function_keys_it(name, key):
    assert child.parameter_name(name) == key
    assert tf_runners.parameter_name(name) == key  # the runner's copy: the two must agree


def test_the_answer_names_tensors_as_the_tflite_signature_does_and_finds_the_savedmodel_key():
    """2.x's SavedModel keys ONNX input '0' as 'arg_0' (tf.function), its TFLite file as '0': the answer gives '0'."""
    spec = lambda *shape: type("Spec", (), {"shape": shape})()  # noqa: E731
    assert child._ordered({"arg_0": spec(1, None, 3), "x": spec(2)}, ["0", "x"], "input") == [["0", [1, -1, 3]], ["x", [2]]]
    with pytest.raises(RuntimeError, match=r"the SavedModel's inputs \(arg_1\) do not name the ONNX inputs \['0'\]"):
        child._ordered({"arg_1": spec(1)}, ["0"], "input")


def test_a_failure_while_tf_traces_names_the_error_raised_inside_not_the_wrapper():
    """TF's StagingError says "in user code:" on its first line, then a traceback, then the error raised inside."""
    inner = RuntimeError("in user code:\n\n    File \"x.py\", line 1, in run  *\n        raise E(\n\n"
                         "    ModelIRSavedModelExportError: Tensor is unbound during SavedModel export: tensor=t_ndhwc\n")
    outer = RuntimeError("flatbuffer_direct fast path failed.")
    outer.__cause__ = inner
    assert child._cause(outer) == ("RuntimeError: ModelIRSavedModelExportError: Tensor is unbound during SavedModel "
                                   "export: tensor=t_ndhwc")
    assert child._cause(RuntimeError("first line\nsecond")) == "RuntimeError: first line"


@pytest.mark.slow
@needs_side_environment
def test_onnx2tf_2x_converts_what_1x_cannot(tmp_path):
    source = gather_elements(tmp_path / "m.onnx")
    with pytest.raises(ConversionError, match=r"on node 'c2p_gather' \(GatherElements\)|Functional model"):
        first = tmp_path / "v1"
        first.mkdir()
        get_converter("onnx2tf").convert(source, first, first / "convert.log", ConversionOptions(outputs=("saved_model",)))
    out = tmp_path / "v2"
    out.mkdir()
    result = SIDE.convert(source, out, out / "convert.log", ConversionOptions(int8=Int8Request(None, "dynamic_range")))
    assert result.converter == "onnx2tf2" and result.version.startswith("2.")
    assert (result.saved_model / "saved_model.pb").exists() and set(result.tflite) == {"fp32", "fp16"}
    assert [(t.name, t.shape) for t in result.inputs] == [("x", (1, 6, 8))]
    assert [(t.name, t.shape) for t in result.outputs] == [("y", (1, 2, 6, 6))]
    assert result.made_by["tflite_fp32"] == f"onnx2tf {result.version} (flatbuffer_direct)"
    # its fp16 file: float16 weights, float32 compute and I/O (flatbuffer_direct's computes in float16 throughout)
    from ai_edge_litert.interpreter import Interpreter

    fp16 = Interpreter(model_path=str(result.tflite["fp16"]))
    assert [d["dtype"] for d in fp16.get_input_details() + fp16.get_output_details()] == [np.float32, np.float32]
    assert "float16 weights by TensorFlow's TFLite converter" in result.made_by["tflite_fp16"]
    assert any(note.startswith("model_float16.tflite is TensorFlow's float16 quantization") for note in result.notes)
    assert "-fdosm" in result.made_by["tf_saved_model"]
    assert any("int8" in note and "not audited" in note for note in result.notes)
    assert result.keras is not None or any("Keras v3 file" in note for note in result.notes)
    assert not (out / ".onnx2tf2-work").exists()


def depthwise_gelu(path: Path, strides=(1, 1), dilations=(1, 1)) -> Path:
    """PVTv2's Mix-FFN in small: a depthwise 3x3 conv (two output channels per input channel) and ONNX's own Gelu
    (opset 20). 2.6.9's SavedModel export refused both: no GELU kernel, and four dilations passed to
    tf.nn.depthwise_conv2d."""
    rng = np.random.default_rng(0)
    initializers = [numpy_helper.from_array(rng.standard_normal((8, 1, 3, 3)).astype(np.float32), "w"),
                    numpy_helper.from_array(rng.standard_normal(8).astype(np.float32), "b")]
    nodes = [helper.make_node("Conv", ["x", "w", "b"], ["c"], name="dwconv", group=4, pads=[1, 1, 1, 1],
                              strides=list(strides), dilations=list(dilations)),
             helper.make_node("Gelu", ["c"], ["y"], name="act")]
    graph = helper.make_graph(nodes, "mix_ffn", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4, 6, 10])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)], initializer=initializers)
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 20)]), str(path))
    return path


@pytest.mark.slow
@needs_side_environment
def test_2x_writes_the_savedmodel_of_a_depthwise_conv_and_a_gelu_and_it_computes_them(tmp_path):
    import onnxruntime as ort
    import tensorflow as tf

    source = depthwise_gelu(tmp_path / "m.onnx")
    out = tmp_path / "v2"
    out.mkdir()
    result = SIDE.convert(source, out, out / "convert.log", ConversionOptions(outputs=("saved_model",)))
    x = np.random.default_rng(1).standard_normal((1, 4, 6, 10)).astype(np.float32) * 2
    expected = ort.InferenceSession(str(source), providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]
    serve = tf.saved_model.load(str(result.saved_model)).signatures["serving_default"]
    (key, spec), = serve.structured_input_signature[1].items()
    fed = x if tuple(spec.shape) == x.shape else x.transpose(0, 2, 3, 1)  # onnx2tf may take NHWC
    got = next(iter(serve(**{key: tf.constant(fed)}).values())).numpy()
    got = got if got.shape == expected.shape else got.transpose(0, 3, 1, 2)
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-4)


@pytest.mark.slow
@needs_side_environment
def test_a_depthwise_conv_with_stride_and_dilation_is_refused_not_computed_wrong(tmp_path):
    """tf.nn.depthwise_conv2d only warns when given both, and samples the wrong positions."""
    source = depthwise_gelu(tmp_path / "m.onnx", strides=(2, 2), dilations=(2, 2))
    out = tmp_path / "v2"
    out.mkdir()
    with pytest.raises(ConversionError, match=r"strides \[2, 2\] and dilations \[2, 2\]"):
        SIDE.convert(source, out, out / "convert.log", ConversionOptions(outputs=("saved_model",)))


@pytest.mark.slow
@needs_side_environment
def test_a_2x_failure_is_one_line_naming_the_node(tmp_path):
    """Unique has no TFLite builtin; 2.6.9 writes it as a custom op, which its SavedModel export refuses."""
    graph = helper.make_graph(
        [helper.make_node("Relu", ["x"], ["r"], name="relu_0"), helper.make_node("Unique", ["r"], ["y"], name="uniq_1", sorted=1)],
        "bad", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [4])], [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)])
    source = tmp_path / "bad.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(source))
    out = tmp_path / "out"
    out.mkdir()
    with pytest.raises(ConversionError, match=r"^onnx2tf 2\.\d+\.\d+ failed on node 'uniq_1' \(Unique\): .*CUSTOM ops.*; "
                                              r"full log: .*convert.log$"):
        SIDE.convert(source, out, out / "convert.log", ConversionOptions())


def test_a_free_dimension_the_child_writes_as_minus_one_reads_as_none():
    from pipeline.converters.onnx2tf_v2 import _dims

    # as 1.x's adapter gives it: the convert stage's check that a dynamic axis stayed dynamic reads None
    assert _dims([-1, 3, -1, -1]) == (None, 3, None, None) and _dims([1, 4]) == (1, 4)


def test_the_2x_childs_onnxsim_calls_skip_the_pass_that_changes_a_zero_pad_before_a_max_pool(monkeypatch):
    """The child runs in the side environment; its patch is plain Python on onnx2tf.onnx2tf's subprocess."""
    import importlib.util
    import subprocess as real_subprocess

    import onnx2tf.onnx2tf as module

    spec = importlib.util.spec_from_file_location("child", Path(__file__).parents[2] / "pipeline/converters/onnx2tf_v2_child.py")
    child = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(child)
    calls = []
    monkeypatch.setattr(module, "subprocess", real_subprocess)  # restored after the test
    monkeypatch.setattr(real_subprocess, "check_output", lambda args, **kwargs: calls.append(list(args)) or b"")
    child._onnxsim_without_unsafe_passes()
    module.subprocess.check_output(["onnxsim", "a.onnx", "a.onnx"], stderr=None)
    module.subprocess.check_output(["onnxsim", "a.onnx", "a.onnx", "--skip-optimization"], stderr=None)
    module.subprocess.check_output(["ls"])
    assert calls == [["onnxsim", "a.onnx", "a.onnx", "--skip-optimization", "fuse_pad_into_pool"],
                     ["onnxsim", "a.onnx", "a.onnx", "--skip-optimization"], ["ls"]]
