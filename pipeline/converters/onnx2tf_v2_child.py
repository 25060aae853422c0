"""One onnx2tf 2.x conversion, run as a script by the side environment's Python 3.12 (.venv312).

Run by path (`python3.12 onnx2tf_v2_child.py request.json`), not as `pipeline.…`: the side
environment has onnx2tf and TensorFlow only, not the pipeline's own dependencies, so this file
imports the standard library at the top and onnx2tf/TensorFlow inside its functions.

The request (written by onnx2tf_v2.py) holds onnx2tf's keyword arguments; the answer, written to
the request's `answer` path, names the files written, the SavedModel's inputs and outputs in the
ONNX graph's order, and notes, or why the conversion failed. onnx2tf's own output goes to stdout
and stderr, which the parent sends to convert.log.
"""
from __future__ import annotations

import json
import re
import sys
import traceback
from pathlib import Path

WORK_NAME = "model"  # onnx2tf names its files after the input file's stem


def main(request_path: str) -> int:
    request = json.loads(Path(request_path).read_text())
    answer = Path(request["answer"])
    try:
        _convert(request)
        result = _describe(Path(request["kwargs"]["output_folder_path"]), request)
    except (Exception, SystemExit) as exc:  # onnx2tf exits or raises anything; the parent turns it into one line
        traceback.print_exc()
        answer.write_text(json.dumps({"ok": False, "error": _cause(exc)}))
        return 1
    answer.write_text(json.dumps({"ok": True, **result}))
    return 0


def _convert(request: dict) -> None:
    import onnx2tf

    _savedmodel_gelu()
    _savedmodel_depthwise_conv()
    _onnxsim_without_unsafe_passes()
    onnx2tf.convert(**request["kwargs"])


# onnxsim's optimizer passes that change what a graph computes (as pipeline/converters/onnxsim_worker.py's
# UNSAFE_PASSES, which this file cannot import): fuse_pad_into_pool makes a zero Pad before a MaxPool the
# pool's -inf padding (BiT's stem).
UNSAFE_ONNXSIM_PASSES = ("fuse_pad_into_pool",)


def _onnxsim_without_unsafe_passes() -> None:
    """onnx2tf 2.x simplifies with the `onnxsim` command: each call skips UNSAFE_ONNXSIM_PASSES, unless
    it names optimizers to skip itself."""
    import onnx2tf.onnx2tf as module

    real = module.subprocess

    class _Subprocess:
        def __getattr__(self, name):
            return getattr(real, name)

        def check_output(self, args, **kwargs):
            if (isinstance(args, (list, tuple)) and args and args[0] == "onnxsim"
                    and not any(arg in ("--skip-optimization", "--skip-optimizer") for arg in args)):
                args = [*args, "--skip-optimization", *UNSAFE_ONNXSIM_PASSES]
            return real.check_output(args, **kwargs)

    module.subprocess = _Subprocess()


def _savedmodel_gelu() -> None:
    """2.6.9's SavedModel exporter has no kernel for GELU, the op its own TFLite files use for ONNX's Gelu (opset
    20) and for the Erf chain it fuses into one; it refused the whole SavedModel of every model with a GELU
    ("unsupported_op_types=['GELU']": PVTv2, BERT). The kernel added is the op its TFLite files hold: GELU
    without 2.x's IR carrying an 'approximate' option, so the exact, erf form (tf.nn.gelu(approximate=False)).
    A later onnx2tf with its own GELU kernel keeps it."""
    import tensorflow as tf
    from onnx2tf.tflite_builder import saved_model_exporter as exporter

    if "GELU" in exporter._REGISTERED_KERNELS:  # noqa: SLF001 - onnx2tf has no public registry of these kernels
        return
    def gelu(executor, op, env) -> None:
        x = executor._resolve_tensor(op.inputs[0], env)  # noqa: SLF001
        approximate = bool(op.options.get("approximate", False))  # 2.6.9's IR has none: the erf form, as its TFLite
        executor._assign_outputs(op, [tf.nn.gelu(x, approximate=approximate)], env)  # noqa: SLF001

    exporter._REGISTERED_KERNELS["GELU"] = gelu  # noqa: SLF001
    exporter.SUPPORTED_KERNEL_OP_TYPES.add("GELU")


def _savedmodel_depthwise_conv() -> None:
    """2.6.9's SavedModel kernel for DEPTHWISE_CONV_2D passes tf.nn.depthwise_conv2d four dilations where it takes
    two (one per spatial axis), which fails every depthwise conv ("`input.shape.rank` must be at least 5": PVTv2's
    Mix-FFN), and reads the filter as one output channel per input channel. This kernel runs the op its TFLite
    files hold: the filter [1, H, W, C*M] as TensorFlow's [H, W, C, M]."""
    import onnx2tf
    import tensorflow as tf
    from onnx2tf.tflite_builder import saved_model_exporter as exporter

    if onnx2tf.__version__ != "2.6.9":  # the version whose kernel this replaces; another keeps its own
        return

    def depthwise_conv2d(executor, op, env) -> None:
        x = executor._resolve_tensor(op.inputs[0], env)  # noqa: SLF001
        w = executor._resolve_tensor(op.inputs[1], env)  # noqa: SLF001
        b = executor._resolve_optional_tensor(op.inputs[2], env) if len(op.inputs) >= 3 else None  # noqa: SLF001
        strides = [int(op.options.get("strideH", 1)), int(op.options.get("strideW", 1))]
        dilations = [int(op.options.get("dilationHFactor", 1)), int(op.options.get("dilationWFactor", 1))]
        channels = x.shape[-1]
        if max(strides) > 1 and max(dilations) > 1:  # TensorFlow only warns, and samples the wrong positions
            raise exporter.ModelIRSavedModelExportError(
                f"DEPTHWISE_CONV_2D with strides {strides} and dilations {dilations}: tf.nn.depthwise_conv2d cannot take both")
        if channels is None or w.shape[0] != 1 or w.shape[3] % channels:
            raise exporter.ModelIRSavedModelExportError(
                f"DEPTHWISE_CONV_2D filter {list(w.shape)} does not read as [1, H, W, C*M] for {channels} input channels")
        filter_hwcm = tf.reshape(w[0], [w.shape[1], w.shape[2], channels, w.shape[3] // channels])
        y = tf.nn.depthwise_conv2d(x, filter_hwcm, strides=[1, *strides, 1], dilations=dilations,
                                   padding=str(op.options.get("padding", "SAME")).upper())
        if b is not None:
            y = tf.nn.bias_add(y, b)
        y = exporter._apply_fused_activation(y, str(op.options.get("fusedActivationFunction", "NONE")))  # noqa: SLF001
        executor._assign_outputs(op, [y], env)  # noqa: SLF001

    exporter._REGISTERED_KERNELS["DEPTHWISE_CONV_2D"] = depthwise_conv2d  # noqa: SLF001


# How onnx2tf 2.x's flatbuffer_direct backend names the op and node it cannot lower ("op=Foo node=n") or
# export ("onnxOp=Foo onnxNodeName=n"); onnx2tf_v2.py reads the same two.
NAMES_NODE = r"\b(?:op|onnxOp)=(\S+) (?:node|onnxNodeName)=(\S+)"


def _cause(exc: BaseException) -> str:
    """One line: the exception in onnx2tf's chain that names an op and node, else the innermost one."""
    chain = [exc]
    while chain[-1].__cause__ is not None:
        chain.append(chain[-1].__cause__)
    if isinstance(exc, SystemExit):
        return f"onnx2tf exited with code {exc.code}"
    lines = [f"{type(e).__name__}: {_said(e)}" for e in chain]
    return next((line for line in lines if re.search(NAMES_NODE, line)), lines[-1])[:600]


def _said(exc: BaseException) -> str:
    """The message's first line; for TensorFlow's tracing wrapper ("in user code:", then a traceback), its last:
    the error raised while tracing (2.6.9's SavedModel export: "ModelIRSavedModelExportError: Tensor is unbound")."""
    lines = [line.strip() for line in str(exc).strip().splitlines() if line.strip()] or [""]
    return lines[-1] if lines[0].endswith(":") else lines[0]


def _describe(folder: Path, request: dict) -> dict:
    files = {
        "saved_model": folder if (folder / "saved_model.pb").exists() else None,
        "keras": _present(folder / f"{WORK_NAME}_float32_v3.keras"),
        "tflite_fp32": _present(folder / f"{WORK_NAME}_float32.tflite"),
        "tflite_fp16": _present(folder / f"{WORK_NAME}_float16.tflite"),
    }
    if files["saved_model"] is None:
        raise RuntimeError(f"onnx2tf wrote no SavedModel in {folder}")
    inputs, outputs = _signature(folder, request["onnx_inputs"], request["onnx_outputs"])
    notes, dropped = [], []
    fp16 = None
    if files["tflite_fp16"] is not None:
        fp16 = _weights_only_fp16(folder, files["tflite_fp16"])
    if files["keras"] is not None:
        why = _keras_fails_to_load(files["keras"])
        if why:
            files["keras"].unlink()
            files["keras"] = None
            dropped.append("keras")
            notes.append(f"onnx2tf's Keras v3 file (built from its SavedModel) does not load back ({why}); no Keras file "
                         "from this converter, so Keras is not audited")
    return {"files": {k: str(v) if v else None for k, v in files.items()}, "inputs": inputs, "outputs": outputs,
            "notes": notes, "dropped": dropped, "version": _version(), "fp16": fp16}


def _weights_only_fp16(saved_model: Path, target: Path) -> dict:
    """flatbuffer_direct's fp16 file computes in float16 throughout, its I/O too, and LiteRT's CPU kernels
    refuse some of its ops (RESIZE_BILINEAR, SIGN with a float16 output). TensorFlow's own float16
    quantization of the SavedModel stores the weights as float16 and computes in float32, as onnx2tf 1.x's
    file does: that file replaces it. Where TensorFlow's converter fails, flatbuffer_direct's file stays."""
    import tensorflow as tf

    try:
        converter = tf.lite.TFLiteConverter.from_saved_model(str(saved_model))
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.target_spec.supported_types = [tf.float16]
        data = converter.convert()
    except Exception as exc:  # noqa: BLE001 (TensorFlow's converter raises many types; the answer carries the reason)
        return {"made_by": "flatbuffer_direct", "why": f"{type(exc).__name__}: {(str(exc).strip().splitlines() or [''])[0][:300]}"}
    target.write_bytes(data)
    return {"made_by": "tf_converter", "why": None}


def _present(path: Path) -> Path | None:
    return path if path.exists() and path.stat().st_size > 0 else None


def _signature(folder: Path, onnx_inputs: list[str], onnx_outputs: list[str]) -> tuple[list, list]:
    """[[name, shape]] of the serving signature's inputs and outputs, in the ONNX graph's order: the
    signature keys them by name (a dict has no position)."""
    import tensorflow as tf

    signature = tf.saved_model.load(str(folder)).signatures["serving_default"]
    given = signature.structured_input_signature[1]
    returned = signature.structured_outputs
    return _ordered(given, onnx_inputs, "input"), _ordered(returned, onnx_outputs, "output")


def _ordered(specs: dict, onnx_names: list[str], kind: str) -> list:
    """[[ONNX name, shape]]: the TFLite signature keys by the ONNX names, and so does the SavedModel's (an
    input's as tf.function's parameter name for it: the SavedModel runner asks for that key itself)."""
    keys = list(specs)
    if len(keys) != len(onnx_names):
        raise RuntimeError(f"the SavedModel has {len(keys)} {kind}s ({', '.join(keys)}), the ONNX model {len(onnx_names)}")
    found = {n: next((k for k in (n, parameter_name(n)) if k in specs), None) for n in onnx_names}
    missing = [n for n, key in found.items() if key is None]
    if missing:
        raise RuntimeError(f"the SavedModel's {kind}s ({', '.join(keys)}) do not name the ONNX {kind}s {missing}")
    return [[n, [d if d is not None else -1 for d in specs[found[n]].shape]] for n in onnx_names]


def parameter_name(name: str) -> str:
    """The parameter name tf.function gives a signature input named `name` ('0' -> 'arg_0'): TensorFlow's
    function_type.sanitize_arg_name, copied here as in pipeline/runners/tensorflow.py (this file imports
    nothing of the pipeline)."""
    swapped = "".join(c if c.isalnum() else "_" for c in name)
    return swapped if swapped[:1].isalpha() else f"arg_{swapped}"


# Loads a Keras file as the audit does (safe mode, no compile) and prints why it fails, if it does.
LOAD_CHECK = """
import sys, tf_keras
try:
    tf_keras.models.load_model(sys.argv[1], safe_mode=True, compile=False)
except Exception as exc:
    print(f"{type(exc).__name__}: {(str(exc).strip().splitlines() or [''])[0][:200]}")
"""


def _keras_fails_to_load(path: Path) -> str | None:
    """Why the Keras file does not load, or None. Checked in a fresh process: in this one, the classes
    onnx2tf defined while building the model are still registered, and a file that needs them loads here
    but nowhere else (seen with 2.6.9's SavedModel bridge)."""
    import subprocess

    done = subprocess.run([sys.executable, "-c", LOAD_CHECK, str(path)], capture_output=True, text=True, check=False)
    said = done.stdout.strip().splitlines()
    if done.returncode != 0:
        return f"the load check exited with code {done.returncode}"
    return said[-1] if said else None


def _version() -> str:
    from importlib import metadata

    return metadata.version("onnx2tf")


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
