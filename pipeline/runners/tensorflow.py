"""TensorFlow runners: SavedModel, Keras and TFLite (fp32 and fp16).

Each maps the logical (NCHW) feeds to its own layout and names using the
bindings the convert stage recorded, and maps outputs back.
"""
from __future__ import annotations

import re
import sys
import warnings
from pathlib import Path

import numpy as np

from pipeline.artifacts.folder import identity
from pipeline.errors import RunnerError, first_line
from pipeline.keras_io import fast_load, skip_tracking_metadata
from pipeline.inputs import Feed, TensorSpec
from pipeline.runners.base import Runner
from pipeline.runners.layout import decide
from pipeline.runners.tf_io import TFModelIO


class _TFRunner(Runner):
    needs_tensorflow = True  # runs in a full run's TF worker (pipeline/runners/remote.py)

    def __init__(self, path: Path, io: TFModelIO, input_specs: list[TensorSpec], output_names: list[str]) -> None:
        super().__init__(input_specs, output_names)
        self.path = path
        self.io = io
        self.model = None

    def _backend_feed(self, feed: Feed) -> dict[str, np.ndarray]:
        return {b.tf_name: b.layout.to_backend(np.asarray(feed[b.name])) for b in self.io.inputs}

    def _logical_outputs(self, pick) -> dict[str, np.ndarray]:
        """Map each output binding to its logical array; `pick(binding)` fetches the backend's value."""
        return {b.name: b.layout.to_logical(np.asarray(pick(b))) for b in self.io.outputs}

    def _deactivate_impl(self) -> None:
        self.model = None


class TFSavedModelRunner(_TFRunner):
    """The SavedModel's serving_default signature; its outputs keyed by name (or by position: _output_key)."""

    name = "tf_saved_model"

    def _activate_impl(self) -> None:
        self.model = _load_saved_model(self.path)

    def _infer_impl(self, feed: Feed) -> dict[str, np.ndarray]:
        import tensorflow as tf

        accepted = self.model.structured_input_signature[1]
        result = self.model(**{_input_key(accepted, k): tf.constant(v) for k, v in self._backend_feed(feed).items()})
        return self._logical_outputs(lambda b: result[_output_key(result, b)].numpy())


def _input_key(accepted: dict, tf_name: str) -> str:
    """The signature's key for an input: its name, or the parameter name tf.function made of a name that is no
    Python identifier (2.x's SavedModel keys ONNX input '0' as 'arg_0', its TFLite file as '0')."""
    return tf_name if tf_name in accepted else parameter_name(tf_name)


def parameter_name(name: str) -> str:
    """The parameter name tf.function gives a signature input named `name` ('0' -> 'arg_0'): TensorFlow's
    function_type.sanitize_arg_name (copied in pipeline/converters/onnx2tf_v2_child.py, which runs elsewhere)."""
    swapped = "".join(c if c.isalnum() else "_" for c in name)
    return swapped if swapped[:1].isalpha() else f"arg_{swapped}"


def _output_key(result: dict, binding) -> str:
    """Signatures key outputs by the config's output names, as the binding's tf_name holds them (the Keras
    model's output names; onnx2tf 2.x's ONNX names). Older folders' 1.x SavedModels and int8 files, made with
    onnx2tf's own keys, key them by position (output_0, output_1, ...): still read, e.g. by a rerun `audit`."""
    return binding.tf_name if binding.tf_name in result else f"output_{binding.index}"


# SavedModels this process loaded, by the identity of their saved_model.pb (device, inode, size,
# mtime): the convert stage's layout probe and the audit read the same files, and a folder moved
# from the staging area into the artifact folder keeps its files. A changed file is loaded again.
_loaded: dict[tuple[int, int, int, int], object] = {}


def _load_saved_model(path: Path):
    import tensorflow as tf

    key = identity(path / "saved_model.pb")
    if key not in _loaded:
        _loaded.clear()  # one model at a time: a run audits one conversion
        _loaded[key] = tf.saved_model.load(str(path))
    return _loaded[key].signatures["serving_default"]


class KerasRunner(_TFRunner):
    """The .keras file, loaded in safe mode (no arbitrary code from the file)."""

    name = "keras"

    def _activate_impl(self) -> None:
        import tensorflow as tf

        _loaded.clear()  # the SavedModel kept for the audit after the probe: not needed beside a Keras model
        self.model = _load_keras(self.path)
        # onnx2tf's models are chains of TFOpLambda layers: called eagerly they cost seconds
        # per sample on large models; traced once as a graph they run like the SavedModel.
        self._call = tf.function(lambda inputs: self.model(inputs, training=False))

    def _infer_impl(self, feed: Feed) -> dict[str, np.ndarray]:
        backend = self._backend_feed(feed)
        ordered = [backend[b.tf_name] for b in sorted(self.io.inputs, key=lambda b: b.index)]
        result = self._call(ordered if len(ordered) > 1 else ordered[0])
        values = result if isinstance(result, (list, tuple)) else [result]
        return self._logical_outputs(lambda b: values[b.index].numpy())


def _load_keras(path: Path):
    """The .keras file in safe mode, without tf_keras's slowest steps (the same model and numbers:
    pipeline/keras_io.py). Should that fail, the plain load decides (a speed-up never fails a run)."""
    import tf_keras

    try:
        with fast_load():
            return tf_keras.models.load_model(str(path), safe_mode=True, compile=False)
    except Exception as exc:  # noqa: BLE001 (tf_keras raises many types; the plain load below reports real errors)
        print(f"{path.name}: the fast Keras load failed ({type(exc).__name__}: {first_line(exc, 200)}); loading it plainly",
              file=sys.stderr)
    with skip_tracking_metadata():
        return tf_keras.models.load_model(str(path), safe_mode=True, compile=False)


class TFLiteRunner(_TFRunner):
    """A .tflite file through the LiteRT interpreter: its signature runner, or, for a file
    written without signatures (onnx2tf does that for some models), its tensors by position."""

    needs_tensorflow = False  # LiteRT alone

    def __init__(self, path: Path, io: TFModelIO, input_specs: list[TensorSpec], output_names: list[str], precision: str) -> None:
        super().__init__(path, io, input_specs, output_names)
        self.precision = precision
        self.name = f"tflite_{precision}"

    def _activate_impl(self) -> None:
        from ai_edge_litert.interpreter import Interpreter

        interpreter = Interpreter(model_path=str(self.path))
        if interpreter.get_signature_list():
            self.model = interpreter.get_signature_runner()
        else:
            interpreter.allocate_tensors()
            self.model = interpreter

    def _infer_impl(self, feed: Feed) -> dict[str, np.ndarray]:
        try:
            return self._invoke(feed)
        except RuntimeError as exc:
            flex = sorted(set(re.findall(r"Flex\w+", str(exc))))
            if "Select TensorFlow op" not in str(exc):
                raise
            raise RunnerError(f"{self.name}: the .tflite file uses Select TF ops {flex or ''} that need the Flex delegate, "
                              "which standard TFLite runtimes (and this interpreter) lack; it cannot run as shipped") from None

    def _invoke(self, feed: Feed) -> dict[str, np.ndarray]:
        backend_feed = self._backend_feed(feed)
        if callable(self.model):
            inputs, outputs = self.model.get_input_details(), self.model.get_output_details()
            # Keyed as its signature keys them: a file made from 2.x's SavedModel takes ONNX input '0' as 'arg_0'.
            keyed = {_input_key(inputs, k): v for k, v in backend_feed.items()}
            result = self.model(**{k: _quantized(v, inputs.get(k)) for k, v in keyed.items()})
            # Files converted from an older folder's SavedModel (onnx2tf's int8 ones) name outputs output_<n>.
            key = lambda b: _output_key(result, b)  # noqa: E731
            return self._logical_outputs(lambda b: _dequantized(result[key(b)], outputs.get(key(b))))
        return self._infer_by_position(backend_feed)

    def _infer_by_position(self, backend_feed: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        details = self.model.get_input_details()
        pairs = list(zip(sorted(self.io.inputs, key=lambda b: b.index), details))
        resized = [(d, backend_feed[b.tf_name].shape) for b, d in pairs if tuple(d["shape"]) != backend_feed[b.tf_name].shape]
        for detail, shape in resized:  # a dynamic input at another size (the signature runner resizes by itself)
            self.model.resize_tensor_input(detail["index"], list(shape))
        if resized:
            self.model.allocate_tensors()
        for binding, detail in pairs:
            self.model.set_tensor(detail["index"], _quantized(backend_feed[binding.tf_name], detail))
        self.model.invoke()
        # Outputs are named "<function>:<n>"; n is the position in the Keras model's outputs.
        outputs = sorted(self.model.get_output_details(), key=lambda d: int(d["name"].rsplit(":", 1)[-1]) if ":" in d["name"] else 0)
        return self._logical_outputs(lambda b: _dequantized(self.model.get_tensor(outputs[b.index]["index"]), None))


class TFLiteLayersRunner(TFLiteRunner):
    """A .tflite file with every intermediate tensor kept (LiteRT's experimental_preserve_all_tensors),
    keyed by ONNX tensor: TFLite names a tensor after the TF layers of the ops that made it (fused ops
    joined by ';', the last op first), and the converter recorded which TF layer makes each ONNX tensor.
    Only tensors an op writes are read (not constants), in the file's own order; integer tensors are
    dequantized with their own scale and zero point, and each is laid out as its ONNX tensor."""

    partial_outputs = True

    def __init__(self, path: Path, io: TFModelIO, input_specs: list[TensorSpec], precision: str,
                 tf_layers: dict[str, str], onnx_shapes: dict[str, list[int]]) -> None:
        super().__init__(path, io, input_specs, [], precision)
        self.name = f"tflite_{precision}_layers"
        self.by_layer = tf_layers  # TF layer -> the ONNX tensor it makes
        self.onnx_shapes = onnx_shapes
        self.bound: dict[str, tuple[int, object]] = {}  # ONNX tensor -> (TFLite tensor index, layout)
        self.details: dict[int, dict] = {}
        self.written: list[tuple[int, str]] = []  # (tensor index, op) of every op output, in execution order
        self.first_non_finite: dict | None = None  # of the last sample run

    def _activate_impl(self) -> None:
        from ai_edge_litert.interpreter import Interpreter, OpResolverType

        # Without the default XNNPACK delegate: ops it takes over leave their output tensors unwritten
        # (a Dequantize's reads as zeros or garbage), so every op runs in LiteRT's own kernels here.
        with warnings.catch_warnings():  # "intended for debugging": that is what it is for here
            warnings.simplefilter("ignore")
            interpreter = Interpreter(model_path=str(self.path), experimental_preserve_all_tensors=True,
                                      experimental_op_resolver_type=OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES)
        interpreter.allocate_tensors()
        self.model = interpreter
        self.details = {d["index"]: d for d in interpreter.get_tensor_details()}
        ops = interpreter._get_ops_details()  # noqa: SLF001 (LiteRT's own op list, in execution order)
        self.written = [(i, op["op_name"]) for op in ops for i in op["outputs"] if i >= 0]
        for index, _ in self.written:
            tensor = self.by_layer.get(_layer_of(self.details[index]["name"]))
            shape = self.onnx_shapes.get(tensor) if tensor else None
            if shape is None or tensor in self.bound or any(d <= 0 for d in shape):
                continue
            layout = decide(tuple(shape), tuple(int(d) for d in self.details[index]["shape"]), prefer_channel_last=True)
            if layout.decided_by != "unresolved":
                self.bound[tensor] = (index, layout)
        self.output_names = list(self.bound)

    def _infer_impl(self, feed: Feed) -> dict[str, np.ndarray]:
        backend_feed = self._backend_feed(feed)
        for binding, detail in zip(sorted(self.io.inputs, key=lambda b: b.index), self.model.get_input_details()):
            self.model.set_tensor(detail["index"], _quantized(backend_feed[binding.tf_name], detail))
        self.model.invoke()
        self.first_non_finite = self._first_non_finite()
        return {tensor: layout.to_logical(_dequantized(self.model.get_tensor(index), self.details[index]))
                for tensor, (index, layout) in self.bound.items()}

    def _first_non_finite(self) -> dict | None:
        """The first tensor, in the file's execution order, that holds NaN or Inf (aligned with an ONNX
        tensor or not: a decomposed LayerNorm's Rsqrt has no ONNX tensor of its own), and the next tensor
        after it that is aligned."""
        aligned = {index: tensor for tensor, (index, _) in self.bound.items()}
        for position, (index, op) in enumerate(self.written):
            value = self.model.get_tensor(index)
            if np.issubdtype(value.dtype, np.floating) and not np.all(np.isfinite(value)):
                following = next((aligned[i] for i, _ in self.written[position:] if i in aligned), None)
                return {"tflite_tensor": self.details[index]["name"], "tflite_op": op, "next_aligned": following}
        return None


def _layer_of(tensor_name: str) -> str:
    """The TF layer of the last op that wrote a TFLite tensor: 'model/tf.nn.relu_3/Relu;model/...' -> 'tf.nn.relu_3'."""
    parts = tensor_name.split(";")[0].split("/")
    return parts[1] if len(parts) >= 3 else parts[0]


def _quantized(array: np.ndarray, detail: dict | None) -> np.ndarray:
    """A float feed for an integer input (an int8-I/O file), with the input's own scale and zero point; for a
    float16 input (onnx2tf 2.x's fp16 file computes in float16 throughout, its I/O too), the feed in float16."""
    if detail is not None and np.issubdtype(detail["dtype"], np.floating) and np.issubdtype(array.dtype, np.floating):
        return array.astype(detail["dtype"], copy=False)
    if detail is None or not np.issubdtype(detail["dtype"], np.integer) or np.issubdtype(array.dtype, np.integer):
        return array
    scale, zero_point = detail["quantization"]
    info = np.iinfo(detail["dtype"])
    return np.clip(np.round(array / scale + zero_point), info.min, info.max).astype(detail["dtype"])


def _dequantized(array: np.ndarray, detail: dict | None) -> np.ndarray:
    if np.asarray(array).dtype == np.float16:  # compared in float32, as every other backend's outputs
        return np.asarray(array).astype(np.float32)
    if detail is None or not np.issubdtype(np.asarray(array).dtype, np.integer) or not detail["quantization"][0]:
        return array
    scale, zero_point = detail["quantization"]
    return ((np.asarray(array).astype(np.float32) - zero_point) * scale).astype(np.float32)
