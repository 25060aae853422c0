"""How onnx2tf 1.x's TFLite files are converted, changed from inside its convert().

onnx2tf 1.x makes its TFLite files with `tf.lite.TFLiteConverter.from_keras_model(model)`, twice (fp32,
then fp16). TensorFlow's Keras route saves the whole Keras model to a temporary SavedModel first,
tracing every layer's own functions: on ResNet-50 at 64 px its two files took 6.7 and 6.8 s in the
pipeline's run, where converting the SavedModel onnx2tf had just written (`serving_default`: the same
`model(inputs)` on the same input signature) took 0.5 and 0.4 s, with the same operators, tensors and
weights (only TFLite's conversion metadata differs: it records which kind of model was converted;
tests/converters/test_onnx2tf_v1_tflite.py compares both routes' files).

Also: onnx2tf has no option to skip a TFLite precision; a converter asked for one the config did not
ask for returns no model (the empty file is not collected), so no time is spent converting it.
onnx2tf's dynamic-range int8 file (`Optimize.DEFAULT` without float16, from its Keras model's
concrete function) is never skipped.
"""
from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Callable, Iterator

from pipeline.artifacts.folder import identity
from pipeline.patching import Overlay, optional_module, replaced


# What each TFLite file was converted from (`routes`' values), for convert.json's made_by.
FROM_SAVED_MODEL = "its SavedModel"
FROM_KERAS_MODEL = "its Keras model"
FROM_CONCRETE_FUNCTION = "its Keras model's concrete function"
DYNAMIC_RANGE = "dynamic_range"  # `routes`' key for onnx2tf's dynamic-range int8 file


@contextlib.contextmanager
def tflite_from_saved_model(outputs: tuple[str, ...], saved_model_dir: Path, routes: dict[str, str]) -> Iterator[None]:
    """During onnx2tf's convert(): its Keras-model TFLite converters read the SavedModel it wrote to
    saved_model_dir (its output folder) when there is one, and skip the precisions not in `outputs`.
    `routes` gets, per file converted ("fp32", "fp16", DYNAMIC_RANGE), which model it was converted from."""
    import onnx2tf.onnx2tf as module

    skipped = {p for p in ("fp32", "fp16") if f"tflite_{p}" not in outputs}
    loads = SharedLoads(saved_model_dir)
    lite = _Lite(module.tf.lite, skipped, saved_model_dir, routes, loads.release)
    # `tf` inside onnx2tf.onnx2tf: everything is TensorFlow's but `tf.lite`
    with replaced(module, "tf", Overlay(module.tf, lite=lite)), loads.installed():
        yield


class SharedLoads:
    """TensorFlow's SavedModel converter loads the SavedModel once to set itself up (`from_saved_model`) and again
    in each convert(), only to read its graph debug info: three loads for onnx2tf's fp32 and fp16 files, 0.12 s
    each on RegNet-400MF. While installed, loads of the SavedModel folder in TensorFlow's TFLite converter module
    give the first one's object: the same file read, so the same debug info and the same TFLite files, byte for
    byte (tests/converters/test_onnx2tf_v1_tflite.py). TensorFlow would free each load before converting; the
    shared one is held until `release()`, which the fp16 file's conversion calls (onnx2tf's last from the
    SavedModel): one loaded SavedModel, about its weights' size, lives through the two conversions. Loads of
    any other folder, with other arguments, or of a SavedModel written again since (saved_model.pb's identity:
    inode, size and time) are TensorFlow's own."""

    def __init__(self, saved_model_dir: Path) -> None:
        self._folder = str(saved_model_dir)
        self._kept: dict = {}
        self._real = None

    @contextlib.contextmanager
    def installed(self) -> Iterator[None]:
        lite = optional_module("tensorflow.lite.python.lite")
        self._real = getattr(lite, "_load", None)
        if self._real is None:
            yield
            return
        try:
            with replaced(lite, "_load", self.load):
                yield
        finally:
            self.release()

    def load(self, export_dir, tags=None, *args, **kwargs):
        if args or kwargs or str(export_dir) != self._folder:
            return self._real(export_dir, tags, *args, **kwargs)
        try:
            written = identity(Path(self._folder) / "saved_model.pb")
        except FileNotFoundError:  # TensorFlow says what is missing
            return self._real(export_dir, tags)
        key = (frozenset([tags] if isinstance(tags, str) else tags or ()), written)
        if key not in self._kept:
            self._kept[key] = self._real(export_dir, tags)
        return self._kept[key]

    def release(self) -> None:
        """Let the loaded SavedModel go: a later load is TensorFlow's again."""
        self._kept.clear()


class _Lite:
    """tf.lite, whose TFLiteConverter.from_keras_model converts the SavedModel beside it instead."""

    def __init__(self, real_lite, skipped: set[str], saved_model_dir: Path, routes: dict[str, str],
                 release: Callable[[], None] = lambda: None) -> None:
        self._real, self._skipped, self._saved_model, self._routes = real_lite, skipped, saved_model_dir, routes
        self._release = release  # the shared SavedModel load (SharedLoads), once the fp16 file is made
        self.TFLiteConverter = self  # noqa: N815 (mirrors tf.lite.TFLiteConverter)

    def __getattr__(self, name):
        return getattr(self._real, name)

    def from_keras_model(self, *args, **kwargs):
        """onnx2tf calls this after writing its SavedModel (output_signaturedefs): a SavedModel that is not
        there (its save failed, or it was not asked to save), that TensorFlow cannot load, or that it fails
        to convert, leaves TensorFlow's Keras route."""
        keras_route = lambda: self._real.TFLiteConverter.from_keras_model(*args, **kwargs)  # noqa: E731
        real = self._saved_model_converter()
        if real is None:
            return _SkippingConverter(keras_route(), self._skipped, routes=(self._routes, FROM_KERAS_MODEL))
        return _SkippingConverter(real, self._skipped, keras_route, (self._routes, FROM_SAVED_MODEL), self._release)

    def _saved_model_converter(self):
        """TFLite's converter of the SavedModel onnx2tf wrote, or None where there is none TensorFlow loads."""
        if not (self._saved_model / "saved_model.pb").exists():
            return None
        try:
            return self._real.TFLiteConverter.from_saved_model(str(self._saved_model), signature_keys=["serving_default"])
        except Exception as exc:  # noqa: BLE001 (TensorFlow's loader raises many types) - the Keras route converts
            _say_keras_instead("loading the SavedModel for TFLite", exc)
            return None

    def from_concrete_functions(self, *args, **kwargs):
        real = self._real.TFLiteConverter.from_concrete_functions(*args, **kwargs)
        return _SkippingConverter(real, self._skipped, routes=(self._routes, FROM_CONCRETE_FUNCTION))

    def from_saved_model(self, *args, **kwargs):  # onnx2tf's own int8 route: never skipped
        return self._real.TFLiteConverter.from_saved_model(*args, **kwargs)


class _SkippingConverter:
    """A TFLite converter whose convert() returns no model for a skipped precision (fp16: the
    converter was asked for float16 weights, as onnx2tf does before its second convert()). When it
    fails and there is another route (`fallback` makes its converter), that route converts, set up alike."""

    def __init__(self, real, skipped: set[str], fallback=None, routes: tuple[dict, str] | None = None,
                 after_fp16: Callable[[], None] = lambda: None) -> None:
        object.__setattr__(self, "_real", real)
        object.__setattr__(self, "_after_fp16", after_fp16)
        object.__setattr__(self, "_skipped", skipped)
        object.__setattr__(self, "_fallback", fallback)
        object.__setattr__(self, "_routes", routes)  # (the record, what `real` converts from)

    def __getattr__(self, name):
        return getattr(self._real, name)

    def __setattr__(self, name, value):
        setattr(self._real, name, value)

    def convert(self) -> bytes:
        role = _role(self._real)
        try:
            return self._made(role)
        finally:
            if role == "fp16":
                self._after_fp16()

    def _made(self, role: str) -> bytes:
        if role in self._skipped:
            return b""
        if self._fallback is None:
            return self._converted(role)
        try:
            return self._converted(role)
        except Exception as exc:  # noqa: BLE001 (TensorFlow's converter raises many types) - the Keras route converts
            _say_keras_instead("converting the SavedModel to TFLite", exc)
            self._switch_to_fallback()
            return self._converted(role)

    def _converted(self, role: str) -> bytes:
        made = self._real.convert()
        if self._routes is not None:
            record, source = self._routes
            record[role] = source
        return made

    def _switch_to_fallback(self) -> None:
        """The other route's converter, with the settings onnx2tf gave this one."""
        other = self._fallback()
        for name in SETTINGS:
            setattr(other, name, getattr(self._real, name))
        object.__setattr__(self, "_real", other)
        object.__setattr__(self, "_fallback", None)
        if self._routes is not None:
            object.__setattr__(self, "_routes", (self._routes[0], FROM_KERAS_MODEL))


def _say_keras_instead(step: str, exc: Exception) -> None:
    """One line in convert.log (onnx2tf's output is captured there): what failed, and the route taken instead."""
    print(f"{step} failed ({type(exc).__name__}: {str(exc)[:200]}); converting the Keras model instead", flush=True)


def _role(converter) -> str:
    """Which of onnx2tf's files a converter makes, from how onnx2tf set it up (onnx2tf.py, "TFLite" and
    "Dynamic Range Quantization"): float16 weights, int8 weights (optimized without float16), or fp32."""
    import tensorflow as tf

    if tf.float16 in (converter.target_spec.supported_types or []):
        return "fp16"
    return DYNAMIC_RANGE if converter.optimizations else "fp32"


# The converter settings onnx2tf 1.x sets before its convert() calls (onnx2tf.py, "TFLite").
SETTINGS = ("target_spec", "optimizations", "unfold_batchmatmul")
