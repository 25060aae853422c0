"""pipeline/converters/onnxsim_worker.py: onnx2tf's onnxsim calls, served by one warm process, write the
same file as the onnxsim command and fail the way it fails."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import types
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import helper, numpy_helper

from pipeline.converters import onnxsim_worker as worker_module
from pipeline.converters.onnxsim_worker import UNSAFE_PASSES, onnxsim_worker, start_ahead

ONNXSIM = str(Path(sys.executable).parent / "onnxsim")


def _foldable_model(path: Path) -> Path:
    """x + (a * b) with constant a and b: onnxsim folds the product into one initializer."""
    a = numpy_helper.from_array(np.arange(12, dtype=np.float32).reshape(3, 4), "a")
    b = numpy_helper.from_array(np.full((3, 4), 0.5, dtype=np.float32), "b")
    graph = helper.make_graph(
        [helper.make_node("Mul", ["a", "b"], ["ab"]), helper.make_node("Add", ["x", "ab"], ["y"]),
         helper.make_node("Relu", ["y"], ["z"])],
        "foldable", [helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [3, 4])],
        [helper.make_tensor_value_info("z", onnx.TensorProto.FLOAT, [3, 4])], [a, b])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8), path)
    return path


@pytest.fixture
def stand_in():
    """A module that uses subprocess as onnx2tf.onnx2tf does."""
    return types.SimpleNamespace(subprocess=subprocess)


def test_three_calls_write_the_file_the_command_writes(tmp_path, stand_in):
    source = _foldable_model(tmp_path / "model.onnx")
    by_command, by_worker = tmp_path / "command.onnx", tmp_path / "worker.onnx"
    shutil.copyfile(source, by_command)
    shutil.copyfile(source, by_worker)
    for _ in range(3):  # as onnx2tf runs it: in place, three times
        subprocess.check_output([ONNXSIM, str(by_command), str(by_command), "--skip-optimization", *UNSAFE_PASSES],
                                stderr=subprocess.PIPE)
    with onnxsim_worker(module=stand_in):
        outputs = [stand_in.subprocess.check_output(["onnxsim", str(by_worker), str(by_worker)], stderr=subprocess.PIPE)
                   for _ in range(3)]
    assert by_worker.read_bytes() == by_command.read_bytes()
    assert [n.op_type for n in onnx.load(str(by_worker)).graph.node] == ["Add", "Relu"]  # it did simplify
    assert all(isinstance(out, bytes) and b"Finish" in out for out in outputs)  # the CLI's own report, for the log
    assert stand_in.subprocess is subprocess  # the module is itself again


def test_a_call_on_a_file_the_last_call_left_unchanged_is_not_run_again(tmp_path, stand_in, monkeypatch):
    """The second call changes nothing (the first simplified all there was): the third is the same command on
    the same bytes, and is answered with the second's output, as the command would print it."""
    path = _foldable_model(tmp_path / "model.onnx")
    by_command = tmp_path / "command.onnx"
    shutil.copyfile(path, by_command)
    printed = [subprocess.check_output([ONNXSIM, str(by_command), str(by_command), "--skip-optimization", *UNSAFE_PASSES],
                                       stderr=subprocess.PIPE) for _ in range(3)]
    runs = []
    real_run = worker_module._Worker.run
    monkeypatch.setattr(worker_module._Worker, "run", lambda self, argv: runs.append(argv) or real_run(self, argv))
    with onnxsim_worker(module=stand_in):
        call = lambda: stand_in.subprocess.check_output(["onnxsim", str(path), str(path)], stderr=subprocess.PIPE)  # noqa: E731
        outputs = [call() for _ in range(3)]
        assert len(runs) == 2
        path.write_bytes(path.read_bytes() + b"")  # the same bytes rewritten: still not run
        call()
        assert len(runs) == 2
        _foldable_model(path)  # other bytes: simplified again
        call()
        assert len(runs) == 3
    assert path.read_bytes() == by_command.read_bytes()
    assert outputs[2] == outputs[1] == printed[2]


def test_a_failing_simplification_raises_what_the_command_raises(tmp_path, stand_in):
    missing = str(tmp_path / "missing.onnx")
    with pytest.raises(subprocess.CalledProcessError) as by_command:
        subprocess.check_output([ONNXSIM, missing, missing], stderr=subprocess.PIPE)
    with onnxsim_worker(module=stand_in), pytest.raises(subprocess.CalledProcessError) as by_worker:
        stand_in.subprocess.check_output(["onnxsim", missing, missing], stderr=subprocess.PIPE)
    assert by_worker.value.returncode == by_command.value.returncode != 0
    assert b"Traceback" in by_worker.value.stderr


def test_other_commands_and_calls_after_the_worker_died_run_as_subprocesses(tmp_path, stand_in, monkeypatch):
    monkeypatch.setenv("PATH", f"{Path(ONNXSIM).parent}{os.pathsep}{os.environ['PATH']}")  # as the converter sets it
    source = _foldable_model(tmp_path / "model.onnx")
    with onnxsim_worker(module=stand_in):
        assert stand_in.subprocess.check_output([sys.executable, "-c", "print('hi')"]) == b"hi\n"
        worker = stand_in.subprocess._worker  # noqa: SLF001
        worker._process.kill()  # noqa: SLF001 (as a crash would)
        worker._process.wait()  # noqa: SLF001
        stand_in.subprocess.check_output(["onnxsim", str(source), str(tmp_path / "out.onnx")], stderr=subprocess.PIPE)
    assert [n.op_type for n in onnx.load(str(tmp_path / "out.onnx")).graph.node] == ["Add", "Relu"]


def test_nothing_changes_when_onnx2tf_will_not_simplify(stand_in):
    with onnxsim_worker(False, module=stand_in):
        assert stand_in.subprocess is subprocess


def test_the_worker_ends_when_the_calls_stop(tmp_path, stand_in, monkeypatch):
    """So a large model's simplification does not hold memory through the rest of the conversion."""
    monkeypatch.setattr("pipeline.converters.onnxsim_worker.IDLE_SECONDS", 0.1)
    source = _foldable_model(tmp_path / "model.onnx")
    with onnxsim_worker(module=stand_in):
        stand_in.subprocess.check_output(["onnxsim", str(source), str(tmp_path / "out.onnx")], stderr=subprocess.PIPE)
        worker = stand_in.subprocess._worker._process  # noqa: SLF001
        worker.wait(10)  # ended by itself, before the block ends
        assert worker.returncode == 0


def test_a_worker_started_ahead_serves_the_next_conversion_in_its_folder(tmp_path, stand_in, monkeypatch):
    """A conversion child starts the worker while the parent exports; the calls then run in the conversion's
    working folder (onnx2tf's paths may be relative to it), not the one the worker started in."""
    start_ahead()
    ahead = worker_module._ahead.held  # noqa: SLF001
    _foldable_model(tmp_path / "model.onnx")
    monkeypatch.chdir(tmp_path)
    with onnxsim_worker(module=stand_in):
        assert stand_in.subprocess._worker is ahead  # noqa: SLF001
        stand_in.subprocess.check_output(["onnxsim", "model.onnx", "out.onnx"], stderr=subprocess.PIPE)
    assert [n.op_type for n in onnx.load(str(tmp_path / "out.onnx")).graph.node] == ["Add", "Relu"]
    assert worker_module._ahead.held is None and not ahead.alive()  # noqa: SLF001 (used once, then ended)


def test_a_conversion_that_does_not_simplify_ends_the_worker_started_ahead(stand_in):
    start_ahead()
    ahead = worker_module._ahead.held  # noqa: SLF001
    with onnxsim_worker(False, module=stand_in):
        assert stand_in.subprocess is subprocess
    assert worker_module._ahead.held is None and not ahead.alive()  # noqa: SLF001


def _zero_pad_then_max_pool(path: Path) -> Path:
    """A zero Pad at the bottom and right, then a 3x3 MaxPool (BiT's stem): padding a max with 0 is not -inf."""
    pads = numpy_helper.from_array(np.array([0, 0, 0, 0, 0, 0, 1, 1], np.int64), "pads")
    zero = numpy_helper.from_array(np.array(0.0, np.float32), "zero")
    graph = helper.make_graph(
        [helper.make_node("Pad", ["x", "pads", "zero"], ["padded"], mode="constant"),
         helper.make_node("MaxPool", ["padded"], ["y"], kernel_shape=[3, 3], strides=[2, 2])],
        "stem", [helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [1, 2, 7, 7])],
        [helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, [1, 2, 3, 3])], [pads, zero])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8), path)
    return path


def test_a_simplification_keeps_a_zero_pad_before_a_max_pool(tmp_path, stand_in):
    import onnxruntime as ort

    source = _zero_pad_then_max_pool(tmp_path / "model.onnx")
    simplified = tmp_path / "simplified.onnx"
    shutil.copyfile(source, simplified)
    with onnxsim_worker(module=stand_in):
        stand_in.subprocess.check_output(["onnxsim", str(simplified), str(simplified)], stderr=subprocess.PIPE)
    assert "Pad" in [n.op_type for n in onnx.load(str(simplified)).graph.node]
    x = -np.abs(np.random.default_rng(0).standard_normal((1, 2, 7, 7))).astype(np.float32)  # all negative: 0 wins at the border
    run = lambda path: ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]  # noqa: E731
    np.testing.assert_array_equal(run(simplified), run(source))
