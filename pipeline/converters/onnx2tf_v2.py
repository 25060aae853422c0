"""Adapter for onnx2tf 2.x, the second converter: SavedModel, Keras and TFLite fp32/fp16.

onnx2tf 2.x needs Python >= 3.12; the pipeline runs on 3.11. It lives in a side environment,
.venv312 at the repository's root (`make venv` creates it when it finds a python3.12;
PIPELINE_ONNX2TF2_ENV names another), and each conversion runs there as a subprocess of the
conversion child (pipeline/convert/isolate.py, whose limits cover its whole process tree):
onnx2tf_v2_child.py, which imports nothing of the pipeline.

Which 2.x backend writes which file (read in onnx2tf 2.6.9's onnx2tf.py, `convert`):
- TFLite fp32 and fp16: `tflite_backend="flatbuffer_direct"` (its default), FlatBuffers written
  from its own ModelIR, no TensorFlow converter;
- the SavedModel: `flatbuffer_direct_output_saved_model` (`-fdosm`), from the same ModelIR, so the
  SavedModel and the TFLite files are one graph;
- Keras v3: a tf_keras model built on that SavedModel (`_build_keras_model_from_saved_model`), kept
  only when it loads back in safe mode.
The other backend, `tf_converter`, is 1.x's TF-graph route and is not used here.
"""
from __future__ import annotations

import json
import os
import re
import signal
import subprocess
from pathlib import Path

from pipeline.converters.base import ConversionOptions, ConversionResult, TFTensor
from pipeline.converters.onnx2tf_v2_child import NAMES_NODE
from pipeline.errors import ConversionCrashed, ConversionError
from pipeline.process import CRASH_SIGNALS

ROOT = Path(__file__).resolve().parents[2]
ENV_VARIABLE = "PIPELINE_ONNX2TF2_ENV"
CHILD = Path(__file__).with_name("onnx2tf_v2_child.py")
WORK_NAME = "model"
BACKENDS = {"tf_saved_model": "flatbuffer_direct ModelIR -> SavedModel (-fdosm)",
            "keras": "tf_keras on its -fdosm SavedModel (Keras v3)",
            "tflite_fp32": "flatbuffer_direct", "tflite_fp16": "flatbuffer_direct"}
FILES = {"saved_model": "tf_saved_model", "keras": "keras", "tflite_fp32": "tflite_fp32", "tflite_fp16": "tflite_fp16"}


def side_environment() -> Path:
    return Path(os.environ.get(ENV_VARIABLE) or ROOT / ".venv312")


class Onnx2TFV2:
    name = "onnx2tf2"
    label = "onnx2tf"

    # Nothing to import ahead in the conversion child: the work happens in the side environment's process.
    warm_up = "pipeline.converters.base"

    def __init__(self, env: Path | None = None) -> None:
        self.env = env or side_environment()

    @property
    def python(self) -> Path:
        return self.env / "bin" / "python"

    def version(self) -> str:
        found = sorted(self.env.glob("lib/python3.*/site-packages/onnx2tf-*.dist-info"))
        return found[-1].name.removeprefix("onnx2tf-").removesuffix(".dist-info") if found else "not installed"

    def available(self) -> str | None:
        if not self.python.exists():
            return (f"onnx2tf 2.x is not available: no side environment at {self.env} (`make venv` creates it when it "
                    "finds a python3.12; PYTHON312=/path/to/python3.12 names one)")
        if self.version() == "not installed":
            return f"onnx2tf 2.x is not available: {self.env} has no onnx2tf; run `make venv` again"
        return None

    def convert(self, onnx_path: Path, out_dir: Path, log_path: Path, options: ConversionOptions) -> ConversionResult:
        missing = self.available()
        if missing:
            raise ConversionError(missing)
        onnx_path, out_dir, log_path = onnx_path.resolve(), out_dir.resolve(), log_path.resolve()
        work = out_dir / ".onnx2tf2-work"
        work.mkdir(parents=True, exist_ok=True)
        answer = self._run(work, log_path, request(onnx_path, work, options))
        if not answer.get("ok"):
            raise ConversionError(failure_message(self.version(), answer.get("error"), log_path))
        return self._collect(answer, out_dir, options, work)

    def layer_model(self, onnx_path: Path, out_dir: Path, log_path: Path, options: ConversionOptions):
        raise ConversionError(f"onnx2tf {self.version()} (flatbuffer_direct) exposes no map of intermediate tensors to "
                              "build a layer model from; the layer-by-layer audit covers onnx2tf 1.x's models only")

    def _run(self, work: Path, log_path: Path, payload: dict) -> dict:
        request_path = work / "request.json"
        request_path.write_text(json.dumps(payload, indent=2))
        with log_path.open("a") as log:
            log.write(f"----- onnx2tf {self.version()} in {self.env}: {' '.join(sorted(payload['kwargs']))} -----\n")
            log.flush()
            # Its own bin first on PATH: onnx2tf runs the `onnxsim` CLI installed beside it.
            env = {**os.environ, "PATH": f"{self.python.parent}{os.pathsep}{os.environ.get('PATH', '')}"}
            env.pop("PYTHONPATH", None)  # the side environment imports nothing of the pipeline's
            ended = subprocess.run([str(self.python), str(CHILD), str(request_path)], cwd=work, stdout=log,
                                   stderr=subprocess.STDOUT, env=env, check=False)
        answer = Path(payload["answer"])
        if not answer.exists() and -ended.returncode in CRASH_SIGNALS:  # the convert stage converts again without oneDNN
            said = signal.Signals(-ended.returncode).name
            raise ConversionCrashed(f"the onnx2tf {self.version()} process crashed in native code (signal {-ended.returncode}, "
                                    f"{said}); see {log_path}")
        if not answer.exists():
            return {"ok": False, "error": f"the onnx2tf 2.x process ended without an answer (exit code {ended.returncode})"}
        return json.loads(answer.read_text())

    def _collect(self, answer: dict, out_dir: Path, options: ConversionOptions, work: Path) -> ConversionResult:
        files = {k: Path(v) for k, v in answer["files"].items() if v}
        saved_model = out_dir / "saved_model"
        saved_model.mkdir()
        for entry in ("saved_model.pb", "variables", "assets", "fingerprint.pb"):
            if (files["saved_model"] / entry).exists():
                os.replace(files["saved_model"] / entry, saved_model / entry)
        kept = {"keras": out_dir / "model.keras", "tflite_fp32": out_dir / "model_float32.tflite",
                "tflite_fp16": out_dir / "model_float16.tflite"}
        moved = {}
        for name, target in kept.items():
            if name in files and name in options.outputs:
                os.replace(files[name], target)
                moved[name] = target
        _remove_tree(work)
        version = answer["version"]
        made = {"tf_saved_model": saved_model, **moved}
        return ConversionResult(
            saved_model=saved_model, keras=moved.get("keras"),
            tflite={p.removeprefix("tflite_"): f for p, f in moved.items() if p.startswith("tflite_")},
            inputs=[TFTensor(name, _dims(shape)) for name, shape in answer["inputs"]],
            outputs=[TFTensor(name, _dims(shape)) for name, shape in answer["outputs"]],
            converter=self.name, version=version, options=options,
            notes=answer["notes"] + _not_written(options, moved, answer.get("dropped", []), answer.get("fp16")),
            made_by={fmt: f"onnx2tf {version} ({_backend(fmt, answer.get('fp16'))})" for fmt in made},
        )


def request(onnx_path: Path, work: Path, options: ConversionOptions) -> dict:
    """What the child gets: onnx2tf's keyword arguments for these options, the ONNX inputs' and outputs'
    names (to order the SavedModel's signature), and where to answer."""
    refused = [name for name, on in (("auto_replacement", options.auto_replacement),) if on]
    if refused:
        raise ConversionError(f"the onnx2tf 2.x adapter does not map {refused}: its flatbuffer_direct backend generates no "
                              "parameter-replacement file; use an onnx2tf 1.x strategy for it")
    copy = work / f"{WORK_NAME}.onnx"  # onnx2tf simplifies its input in place and names files after its stem
    copy.write_bytes(onnx_path.read_bytes())
    inputs, outputs = _graph_names(onnx_path)
    kwargs = {
        "input_onnx_file_path": str(copy), "output_folder_path": str(work / "tf"),
        "output_signaturedefs": True, "tflite_backend": "flatbuffer_direct",
        "flatbuffer_direct_output_saved_model": True,
        "output_keras_v3": "keras" in options.outputs,
        "not_use_onnxsim": not options.use_onnxsim,
        "keep_ncw_or_nchw_or_ncdhw_input_names": list(options.keep_nchw_inputs) or None,
        "param_replacement_file": str(options.param_replacement_file or ""),
        "replace_to_pseudo_operators": list(options.pseudo_ops) or None,
        "verbosity": "info",
    }
    return {"kwargs": kwargs, "onnx_inputs": inputs, "onnx_outputs": outputs, "answer": str(work / "answer.json")}


def _graph_names(onnx_path: Path) -> tuple[list[str], list[str]]:
    import onnx

    graph = onnx.load(str(onnx_path), load_external_data=False).graph
    initializers = {i.name for i in graph.initializer}
    return [i.name for i in graph.input if i.name not in initializers], [o.name for o in graph.output]


def failure_message(version: str, error: str | None, log_path: Path) -> str:
    """One line: where onnx2tf 2.x failed (its flatbuffer_direct backend names the op and node) and why."""
    error = error or "no error reported"
    found = re.search(NAMES_NODE, error)
    # Without a node: 2.6.9's SavedModel export names op types only (unsupported_op_types=['GELU']).
    where = f" on node '{found.group(2)}' ({found.group(1)})" if found else ""
    return f"onnx2tf {version} failed{where}: {error[:300]}; full log: {log_path}"


def _not_written(options: ConversionOptions, moved: dict, dropped: list[str], fp16: dict | None) -> list[str]:
    """Asked-for files there are none of (a file the child dropped has its own note), and how the fp16 file was made."""
    notes = [f"onnx2tf 2.x wrote no {name} file for this model (see convert.log)"
             for name in ("keras", "tflite_fp32", "tflite_fp16") if name in options.outputs and name not in {*moved, *dropped}]
    if "tflite_fp16" in moved:
        notes.append(_fp16_note(fp16 or {"made_by": "flatbuffer_direct", "why": "the child did not say"}))
    if options.int8 is not None:
        notes.append("no int8 TFLite from onnx2tf 2.x: this adapter does not map int8 quantization yet; int8 is not audited")
    return notes


def _backend(fmt: str, fp16: dict | None) -> str:
    if fmt == "tflite_fp16" and (fp16 or {}).get("made_by") == "tf_converter":
        return "its SavedModel, float16 weights by TensorFlow's TFLite converter"
    return BACKENDS[fmt]


def _fp16_note(fp16: dict) -> str:
    if fp16["made_by"] == "tf_converter":
        return ("model_float16.tflite is TensorFlow's float16 quantization of onnx2tf 2.x's SavedModel (float16 weights, "
                "float32 activations and I/O, as onnx2tf 1.x's): flatbuffer_direct's own fp16 file computes in float16 "
                "throughout, which LiteRT's CPU kernels refuse for some ops (RESIZE_BILINEAR, SIGN)")
    return ("model_float16.tflite (flatbuffer_direct) holds every float tensor in float16, activations and its inputs and "
            "outputs too (onnx2tf 1.x's keeps float32 activations and I/O with float16 weights): the runners feed it "
            f"float16 and the audit judges its outputs like any fp16 file's (TensorFlow's float16 quantization of the "
            f"SavedModel failed: {fp16['why']})")


def _remove_tree(path: Path) -> None:
    import shutil

    shutil.rmtree(path, ignore_errors=True)


def _dims(shape: list[int]) -> tuple[int | None, ...]:
    """The child writes a free dimension as -1 (JSON from a TensorSpec); the stages read None, as from 1.x."""
    return tuple(None if d == -1 else d for d in shape)
