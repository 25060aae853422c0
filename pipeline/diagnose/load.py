"""Load a Keras port safely: no Lambda layers, no custom objects, no Keras 2 HDF5 files.

The saved config is read and checked before Keras deserialises anything, so a refused
file never runs code and the user gets one line saying why.
"""
from __future__ import annotations

import contextlib
import json
import os
import sys
import zipfile
from pathlib import Path
from typing import Any, Iterator

from pipeline.errors import UsageError, first_line

# Layers that wrap arbitrary Python: refused even when safe_mode would let a named function through.
CODE_LAYERS = ("Lambda", "TFOpLambda", "SlicingOpLambda")
RESAVE_HINT = ("re-save it with Keras 3: python -c \"import keras; "
               "keras.saving.load_model('{path}', compile=False).save('{stem}.keras')\" and check the layers it reports")


def load_port(path: Path):
    """The port as a Keras 3 model, loaded with safe_mode=True and without compiling."""
    if not path.is_file():
        raise UsageError(f"--keras {path}: file not found; check the path")
    suffix = path.suffix.lower()
    if suffix not in (".keras", ".h5", ".hdf5"):
        raise UsageError(f"--keras {path}: expected a .keras or .h5 file, got '{suffix or 'no suffix'}'")
    config = _h5_config(path) if suffix in (".h5", ".hdf5") else _keras_config(path)
    _refuse_code(path, config)
    return _load(path)


def _keras_config(path: Path) -> dict:
    try:
        with zipfile.ZipFile(path) as archive:
            return json.loads(archive.read("config.json"))
    except (zipfile.BadZipFile, KeyError, ValueError) as exc:
        raise UsageError(f"--keras {path}: not a readable .keras file ({first_line(exc, 120)}); "
                         "save the port with model.save('port.keras')") from None


def _h5_config(path: Path) -> dict:
    import h5py

    try:
        with h5py.File(path, "r") as handle:
            version = _text(handle.attrs.get("keras_version", ""))
            raw = _text(handle.attrs.get("model_config", ""))
    except OSError as exc:
        raise UsageError(f"--keras {path}: not a readable HDF5 file ({first_line(exc, 120)})") from None
    if not raw:
        raise UsageError(f"--keras {path}: holds weights only, no model config; save the whole model with model.save()")
    if not version.startswith("3."):
        hint = RESAVE_HINT.format(path=path, stem=path.with_suffix(""))
        raise UsageError(f"--keras {path}: an HDF5 file saved by Keras {version or '2 (no version recorded)'}; "
                         f"Keras 2 files are not diagnosed directly: {hint}")
    return json.loads(raw)


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value or "")


def _refuse_code(path: Path, config: dict) -> None:
    for node in _objects(config):
        name, module = node.get("class_name"), node.get("module")
        label = (node.get("config") or {}).get("name") if isinstance(node.get("config"), dict) else None
        if name in CODE_LAYERS:
            raise UsageError(f"--keras {path}: layer '{label or name}' is a {name} layer (arbitrary Python code); "
                             "refused: replace it with built-in Keras layers or ops")
        if isinstance(module, str) and not module.startswith("keras") and name:
            raise UsageError(f"--keras {path}: layer '{label or name}' is a custom object ({module}.{name}); refused: "
                             "the diagnosis loads only built-in Keras layers (safe_mode)")


def _objects(value: Any) -> Iterator[dict]:
    if isinstance(value, dict):
        if "class_name" in value:
            yield value
        for item in value.values():
            yield from _objects(item)
    elif isinstance(value, list):
        for item in value:
            yield from _objects(item)


@contextlib.contextmanager
def _native_stderr_silenced():
    """TensorFlow prints its C++ start-up lines (oneDNN, CUDA probing) on fd 2 whatever
    TF_CPP_MIN_LOG_LEVEL says; keep them off the terminal, where errors are one line each."""
    sys.stderr.flush()
    saved, devnull = os.dup(2), os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 2)
    try:
        yield
    finally:
        sys.stderr.flush()
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)


def _start_keras():
    with _native_stderr_silenced():
        import keras
        import tensorflow as tf

        tf.config.list_physical_devices()  # the CUDA probe, while its complaint is silenced
        keras.ops.convert_to_numpy(keras.ops.zeros((1,)))  # first op: device set-up
    return keras


def _load(path: Path):
    keras = _start_keras()
    try:
        model = keras.saving.load_model(path, safe_mode=True, compile=False)
    except Exception as exc:  # Keras raises ValueError, TypeError and others for the same "cannot load"
        raise UsageError(f"--keras {path}: Keras could not load it ({type(exc).__name__}: {first_line(exc, 160)})") from None
    if not isinstance(model, keras.Model):
        raise UsageError(f"--keras {path}: holds a {type(model).__name__}, not a Keras model")
    nested = [layer.name for layer in model.layers if isinstance(layer, keras.Model)]
    if nested:
        raise UsageError(f"--keras {path}: nested models ({', '.join(nested[:3])}) are not diagnosed; "
                         "build the port as one flat Sequential or functional model")
    return model
