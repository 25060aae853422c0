"""Bad input to `diagnose`: one line on stderr, exit code 2, no traceback."""
from __future__ import annotations

import keras
import pytest
import tf_keras

from pipeline.config import load_config
from pipeline.model.torch_model import build_model
from tests.diagnose import ports
from tests.support import run_cli


@pytest.fixture(scope="module")
def focus(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("focus_bad")
    config = ports.write_config(tmp, "focus_block", [1, 3, 64, 64], "focus")
    return config, build_model(load_config(config)), tmp


def _run(capsys, config, port, tmp) -> tuple[int, list[str]]:
    code = run_cli("diagnose", str(config), "--keras", str(port), "--out", str(tmp / "out"))
    err = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    return code, err


def _one_error_line(err: list[str]) -> str:
    lines = [line for line in err if line.startswith("error: ")]
    assert len(lines) == 1 and not any("Traceback" in line for line in err), err
    return lines[0]


def test_input_shape_that_cannot_take_the_config_inputs(focus, capsys):
    config, model, tmp = focus
    port = tmp / "small.keras"
    inputs = keras.Input((32, 32, 3))
    keras.Model(inputs, keras.layers.Conv2D(4, 3)(inputs)).save(port)
    code, err = _run(capsys, config, port, tmp)
    assert code == 2
    assert "input shape (None, 32, 32, 3) cannot take the config's input 'x' [1, 3, 64, 64]" in _one_error_line(err)


def test_different_architecture_names_what_could_not_be_mapped(focus, capsys):
    config, model, tmp = focus
    port = tmp / "other.keras"
    good = ports.focus_port(model)
    x = keras.layers.Conv2D(8, 1, name="extra_conv")(good.output)
    keras.Model(good.input, x).save(port)
    code, err = _run(capsys, config, port, tmp)
    assert code == 2
    line = _one_error_line(err)
    assert "does not match the PyTorch model's architecture" in line
    assert "no PyTorch module has the weights of Keras layers [extra_conv]" in line


def test_port_with_a_layer_missing_names_the_module(focus, capsys):
    config, model, tmp = focus
    port = tmp / "no_bn.keras"
    good = ports.focus_port(model)
    keras.Model(good.input, keras.layers.LeakyReLU(0.1)(good.get_layer("conv").output)).save(port)
    code, err = _run(capsys, config, port, tmp)
    assert code == 2
    assert "(mapped 1 of 2 weighted modules): no Keras layer for PyTorch modules [bn]" in _one_error_line(err)


def test_lambda_layer_is_refused(focus, capsys):
    config, model, tmp = focus
    port = tmp / "lambda.keras"
    inputs = keras.Input((64, 64, 3))
    keras.Model(inputs, keras.layers.Lambda(lambda t: t * 2, name="double")(inputs)).save(port)
    code, err = _run(capsys, config, port, tmp)
    assert code == 2
    assert "layer 'double' is a Lambda layer (arbitrary Python code); refused" in _one_error_line(err)


def test_custom_object_is_refused(focus, capsys, tmp_path):
    config, model, tmp = focus

    @keras.saving.register_keras_serializable(package="mine")
    class Scale(keras.layers.Layer):
        def call(self, x):
            return x * 2

    port = tmp_path / "custom.keras"
    inputs = keras.Input((64, 64, 3))
    keras.Model(inputs, Scale(name="scale")(inputs)).save(port)
    code, err = _run(capsys, config, port, tmp)
    assert code == 2
    assert "layer 'scale' is a custom object" in _one_error_line(err)


@pytest.mark.filterwarnings("ignore:You are saving your model as an HDF5 file")
def test_keras2_h5_is_refused_with_how_to_resave(focus, capsys, tmp_path):
    config, model, tmp = focus
    port = tmp_path / "old.h5"
    inputs = tf_keras.Input((64, 64, 3))
    tf_keras.Model(inputs, tf_keras.layers.Conv2D(4, 3)(inputs)).save(port)
    code, err = _run(capsys, config, port, tmp)
    assert code == 2
    line = _one_error_line(err)
    assert "an HDF5 file saved by Keras 2." in line and "re-save it with Keras 3" in line


@pytest.mark.parametrize(("name", "content", "message"), [
    ("missing.keras", None, "file not found"),
    ("broken.keras", b"not a zip", "not a readable .keras file"),
    ("model.onnx", b"", "expected a .keras or .h5 file"),
])
def test_unreadable_port(focus, capsys, tmp_path, name, content, message):
    config, model, tmp = focus
    port = tmp_path / name
    if content is not None:
        port.write_bytes(content)
    code, err = _run(capsys, config, port, tmp)
    assert code == 2
    assert message in _one_error_line(err)


def test_fix_must_be_a_keras_file(focus, capsys, tmp_path):
    config, model, tmp = focus
    port = tmp_path / "focus.keras"
    ports.focus_port(model).save(port)
    code = run_cli("diagnose", str(config), "--keras", str(port), "--fix", str(tmp_path / "fixed.h5"), "--out", str(tmp / "out"))
    assert code == 2
    assert "name it *.keras" in _one_error_line(capsys.readouterr().err.splitlines())


@pytest.mark.slow
def test_stderr_is_exactly_one_line_in_a_fresh_process(focus, tmp_path):
    """TensorFlow's own start-up lines (oneDNN, CUDA probing) must not surround the error."""
    import subprocess
    import sys

    from tests.support import REPO

    config, model, tmp = focus
    port = tmp_path / "other.keras"
    inputs = keras.Input((64, 64, 3))
    keras.Model(inputs, keras.layers.Conv2D(4, 3)(inputs)).save(port)
    run = subprocess.run([sys.executable, "-m", "pipeline", "diagnose", str(config), "--keras", str(port), "--out",
                          str(tmp_path / "out")], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert run.returncode == 2
    assert len(run.stderr.strip().splitlines()) == 1 and run.stderr.startswith("error: --keras"), run.stderr


def test_port_that_fails_on_the_inputs(focus, capsys, tmp_path):
    config, model, tmp = focus
    port = tmp_path / "dynamic.keras"
    inputs = keras.Input((None, None, 3))
    keras.Model(inputs, keras.layers.Reshape((32 * 32 * 3,))(inputs)).save(port)
    code, err = _run(capsys, config, port, tmp)
    assert code == 2
    line = _one_error_line(err)
    assert "the port fails on the config's inputs (ValueError: The total size of the tensor must be unchanged" in line
