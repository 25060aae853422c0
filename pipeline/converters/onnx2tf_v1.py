"""Adapter for onnx2tf 1.x's Python API: SavedModel, Keras (.keras) and TFLite fp32/fp16.

onnx2tf's quirks are contained here:
- it simplifies the input file in place with the `onnxsim` CLI, so it gets a copy (the CLI runs in
  one warm process per conversion: onnxsim_worker.py);
- for image-like inputs it downloads a calibration sample unless the file is in its
  working directory, so we write a seeded one there and run it in that folder;
- it calls sys.exit(1) on failure and names the failing node only in its log;
- its map from ONNX tensors to TF tensors (`tf_layers_dict`) is a local of convert();
  a stand-in for `tf_keras.Model` picks it up when convert() builds the model, so a
  Keras model of every intermediate tensor can be saved for layer-by-layer audits;
- its SavedModel's serving_default returns output_0, output_1, ... (it has no option to name them),
  where its Keras model and TFLite files say the ONNX output names: its save is given a signature
  function that returns them by those names (_named_signature).
"""
from __future__ import annotations

import contextlib
import dataclasses
import importlib
import json
import os
import re
import shutil
import sys
import time
from importlib import metadata
from pathlib import Path
from typing import Iterator

import numpy as np

from pipeline import profile
from pipeline.console import capture_output
from pipeline.converters.base import ConversionOptions, ConversionResult, TFTensor
from pipeline.converters.keras_ops import keras_savable_ops
from pipeline.converters.onnx2tf_v1_tflite import DYNAMIC_RANGE, FROM_SAVED_MODEL, tflite_from_saved_model
from pipeline.converters.onnx2tf_v1_einsum import einsum_search_screened
from pipeline.converters.onnx2tf_v1_prefix import dummy_runs_shared
from pipeline.converters.onnx2tf_v1_reshape import reshape_search_decided
from pipeline.converters.onnx2tf_v1_trace import as_written, wrappers_as_written
from pipeline.converters.onnxsim_worker import onnxsim_worker, start_ahead
from pipeline.converters.pool_rewrite import has_pools, rewrite_pools
from pipeline.converters.tflite_ops import io_shapes, read_ops
from pipeline.errors import ConversionError, first_line
from pipeline.keras_io import fast_save
from pipeline.patching import Overlay, replaced

CALIBRATION_FILE = "calibration_image_sample_data_20x128x128x3_float32.npy"
WORK_NAME = "model"  # onnx2tf names its outputs after the input file's stem


def warm_up(idle_core: bool = False) -> None:
    """onnx2tf's imports (TensorFlow's is most of a small model's conversion time) and its onnxsim worker:
    after the imports while the parent exports (the worker would take CPU from the export), before them
    when the parent leaves a core idle (the ONNX route: otherwise the conversion, which starts as soon as
    TensorFlow is in, waits for the worker's imports). TensorFlow is imported first, which imports Keras 3
    as well: TFLite's converter imports it for each conversion (`_is_keras_3`), 0.7 s on the conversion's
    path if onnx2tf is imported first."""
    if idle_core:
        start_ahead()
    for module in ("tensorflow", "tf_keras", "onnx2tf", "onnx2tf.onnx2tf"):
        importlib.import_module(module)
    start_ahead()  # once only: nothing if started above


class Onnx2TFV1:
    name = "onnx2tf"
    label = "onnx2tf"

    # What a conversion child does while the parent exports (pipeline/convert/isolate.py).
    warm_up = f"{__name__}:warm_up"

    def version(self) -> str:
        return metadata.version("onnx2tf")

    def available(self) -> str | None:
        return None  # installed with the pipeline's own environment

    def convert(self, onnx_path: Path, out_dir: Path, log_path: Path, options: ConversionOptions) -> ConversionResult:
        onnx_path, out_dir, log_path = onnx_path.resolve(), out_dir.resolve(), log_path.resolve()  # it runs in another cwd
        work = out_dir / ".onnx2tf-work"
        spy = _LayerMapSpy()  # which layer makes which ONNX tensor: TFLite tensors and int8 layers are named by it
        rewritten: list[str] = []
        routes: dict[str, str] = {}  # precision -> what its TFLite file was converted from
        keras_model = self._converted(onnx_path, work, log_path, options, save=True, spy=spy, notes=rewritten, routes=routes)
        with profile.step("convert: collect the files"):
            result = self._collect(work / "tf", out_dir, keras_model, options)
        result = dataclasses.replace(result, notes=rewritten + result.notes)
        named = _layer_names(spy.tf_layers)
        feeding = _feeding(keras_model, named) if _full_integer(options) else {}
        result = dataclasses.replace(result, tf_layers=named, tf_layers_feeding=feeding)
        if result.keras is None and "keras" in options.outputs:
            with capture_output(log_path), profile.step("convert: Keras file with frozen variables"):
                result = _keras_with_frozen_variables(result, keras_model, out_dir)
        shutil.rmtree(work, ignore_errors=True)
        swapped: dict[str, str] = {}  # a TFLite file the builtin-ops conversion made: which conversion made it
        if not options.pseudo_ops:  # the builtin-ops conversion itself does not look for another
            with profile.step("convert: builtin-ops TFLite check"):
                result, swapped = self._builtin_route(onnx_path, out_dir, log_path, result)
        made_by = {**_made_by(result, routes), **swapped}
        return dataclasses.replace(result, notes=result.notes + _ops_notes(result.tflite), made_by=made_by)

    def layer_model(self, onnx_path: Path, out_dir: Path, log_path: Path, options: ConversionOptions) -> LayerModel:
        """A Keras model with every ONNX tensor onnx2tf mapped as an output, for layer-by-layer audits:
        onnx2tf builds the same graph again (no files), and only this model is saved."""
        onnx_path, out_dir, log_path = onnx_path.resolve(), out_dir.resolve(), log_path.resolve()
        work = out_dir / ".onnx2tf-work"
        spy = _LayerMapSpy()
        keras_model = self._converted(onnx_path, work, log_path, options, save=False, spy=spy)
        with capture_output(log_path), profile.step("convert: layer model"):
            made = _save_layers(keras_model, spy.tf_layers, out_dir, onnx_names(onnx_path, work / f"{WORK_NAME}.onnx"))
        shutil.rmtree(work, ignore_errors=True)
        return made

    def _converted(self, onnx_path: Path, work: Path, log_path: Path, options: ConversionOptions, save: bool,
                   spy: "_LayerMapSpy | None" = None, notes: list[str] | None = None, routes: dict[str, str] | None = None):
        """onnx2tf's Keras model of onnx_path (its files in work/tf when `save`); what was rewritten
        before onnx2tf saw it goes to `notes`, what each TFLite file was converted from to `routes`."""
        work.mkdir(parents=True, exist_ok=True)
        shutil.rmtree(work / "tf", ignore_errors=True)  # the TFLite files are converted from the SavedModel found there
        said = _copied_for_onnx2tf(onnx_path, work / f"{WORK_NAME}.onnx", options)
        if notes is not None:
            notes += said
        np.save(work / CALIBRATION_FILE, np.random.default_rng(0).random((20, 128, 128, 3), dtype=np.float32))
        clock = _OutputClock()
        tflite = tflite_from_saved_model(options.outputs, work.resolve() / "tf", {} if routes is None else routes)
        try:
            # _named_signature before the spy: the spy reads the frame that calls tf_keras.Model (onnx2tf's).
            with _inside(work), capture_output(log_path), clock.running(), _named_signature(), (spy or _NoSpy()).installed(), \
                    tflite, wrappers_as_written(), reshape_search_decided(), einsum_search_screened(), dummy_runs_shared(), \
                    onnxsim_worker(options.use_onnxsim), \
                    fast_save(), keras_savable_ops():
                return self._run_with_replacement(work, options, save)
        except (Exception, SystemExit) as exc:  # onnx2tf exits or raises anything; its log says where
            raise ConversionError(_failure_message(exc, log_path, onnx_path)) from None

    def int8_converter(self, saved_model: Path, representative):
        """TFLite's converter for saved_model set up as onnx2tf makes its full-integer file (onnx2tf.py,
        "INT8 Quantization"): int8 builtins with Select TF ops allowed, per-channel weights, float I/O."""
        import tensorflow as tf

        converter = tf.lite.TFLiteConverter.from_saved_model(str(saved_model))
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8, tf.lite.OpsSet.SELECT_TF_OPS]
        converter.representative_dataset = representative
        return converter

    def _builtin_route(self, onnx_path: Path, out_dir: Path, log_path: Path,
                       result: ConversionResult) -> tuple[ConversionResult, dict[str, str]]:
        """TFLite files that need Select TF ops are converted again with onnx2tf's builtin-only
        replacements for the ops behind them; a file that then needs builtin ops only takes the
        original's place, which is kept as <name>_select_tf_ops.tflite. Written to tflite_builtin.json.
        Also returned: which conversion made each file swapped in (convert.json's made_by)."""
        needs = {p: read_ops(f).select_tf for p, f in result.tflite.items() if read_ops(f).select_tf}
        if not needs:
            return result, {}
        flex = sorted({op for ops in needs.values() for op in ops})
        pseudo, unreplaceable = pseudo_ops_for(flex, _op_types(onnx_path))
        record = {"select_tf_ops": {result.tflite[p].name: list(ops) for p, ops in needs.items()},
                  "pseudo_ops": list(pseudo), "approximations": [PSEUDO_OPS[p] for p in pseudo],
                  "no_builtin_route": unreplaceable, "files": {}, "error": None}
        swapped: dict[str, str] = {}
        if pseudo:
            record, swapped = self._swap_builtin(onnx_path, out_dir, log_path, result, needs, record)
        (out_dir / BUILTIN_RECORD).write_text(json.dumps(record, indent=2) + "\n")
        return dataclasses.replace(result, notes=result.notes + _builtin_notes(record)), swapped

    def _swap_builtin(self, onnx_path, out_dir, log_path, result, needs, record) -> tuple[dict, dict[str, str]]:
        """The record, and per swapped-in file (`tflite_fp32`...) which conversion made it (convert.json's made_by)."""
        builtin_dir = out_dir / ".builtin"
        with log_path.open("a") as log:
            log.write(f"\n===== builtin-ops TFLite: {_replacements(record)} to avoid {sorted(record['select_tf_ops'])} =====\n")
        try:
            builtin = self.convert(onnx_path, builtin_dir, log_path, dataclasses.replace(result.options, pseudo_ops=tuple(record["pseudo_ops"])))
        except ConversionError as exc:
            shutil.rmtree(builtin_dir, ignore_errors=True)
            return {**record, "error": str(exc).split("; full log:")[0]}, {}
        swapped = {}
        for precision in needs:
            original, candidate = result.tflite[precision], builtin.tflite.get(precision)
            ops = read_ops(candidate) if candidate else None
            if ops is None or not ops.standard:
                record["files"][original.name] = {"standard": False, "still_needs": list(ops.select_tf) if ops else []}
                continue
            shipped, builtin_io = io_shapes(original), io_shapes(candidate)
            if builtin_io != shipped:  # bound like the shipped files: it must take and give the same
                record["files"][original.name] = {"standard": False, "still_needs": [], "io_differs": [shipped, builtin_io]}
                continue
            kept = original.with_name(f"{original.stem}_select_tf_ops.tflite")
            os.replace(original, kept)
            os.replace(candidate, original)
            record["files"][original.name] = {"standard": True, "select_tf_file": kept.name}
            fmt = f"tflite_{precision}"
            swapped[fmt] = f"{builtin.made_by[fmt]}, builtin-ops conversion with {_replacements(record)}"
        shutil.rmtree(builtin_dir, ignore_errors=True)
        return record, swapped

    def _run_with_replacement(self, work: Path, options: ConversionOptions, save: bool = True):
        if not options.auto_replacement:
            return self._run(work, options, save)
        try:
            return self._run(work, options, save)
        except (Exception, SystemExit):  # the generated replacement file is the way forward, if any
            generated = work / "tf" / f"{WORK_NAME}_auto.json"
            if not generated.exists():
                raise
            kept = work / "replacement.json"
            os.replace(generated, kept)
            shutil.rmtree(work / "tf", ignore_errors=True)
            print(f"\n--- converting again with the generated parameter-replacement file {kept} ---\n")
            return self._run(work, dataclasses.replace(options, param_replacement_file=kept, auto_replacement=False), save)

    def _run(self, work: Path, options: ConversionOptions, save: bool = True):
        import onnx2tf

        return onnx2tf.convert(
            input_onnx_file_path=str(work / f"{WORK_NAME}.onnx"),
            output_folder_path=str(work / "tf"),
            output_signaturedefs=True,
            not_use_onnxsim=not options.use_onnxsim,
            keep_ncw_or_nchw_or_ncdhw_input_names=list(options.keep_nchw_inputs) or None,
            param_replacement_file=str(options.param_replacement_file or ""),
            auto_generate_json_on_error=options.auto_replacement,
            replace_to_pseudo_operators=list(options.pseudo_ops) or None,
            output_keras_v3="keras" in options.outputs,
            disable_model_save=not save,
            verbosity="info",
            **_int8_arguments(work, options),
        )

    def _collect(self, tf_dir: Path, out_dir: Path, keras_model, options: ConversionOptions) -> ConversionResult:
        saved_model = out_dir / "saved_model"
        saved_model.mkdir()
        for entry in ("saved_model.pb", "variables", "assets", "fingerprint.pb"):
            if (tf_dir / entry).exists():
                shutil.move(str(tf_dir / entry), saved_model / entry)
        keras = _move_if_any(tf_dir / f"{WORK_NAME}_float32_v3.keras", out_dir / "model.keras")
        notes = [] if keras or "keras" not in options.outputs else [
            "onnx2tf wrote no Keras file for this model (see convert.log); Keras is not audited"]
        tflite = {p: _move_if_any(tf_dir / f"{WORK_NAME}_float{b}.tflite", out_dir / f"model_float{b}.tflite")
                  for p, b in (("fp32", "32"), ("fp16", "16")) if f"tflite_{p}" in options.outputs}
        notes += _not_asked(options.outputs)
        tflite.update(_collect_int8(tf_dir, out_dir, options.int8))
        notes += _int8_notes(options.int8, tflite)
        return ConversionResult(
            saved_model=saved_model, keras=keras, tflite={p: f for p, f in tflite.items() if f},
            inputs=[TFTensor(t.name.split(":")[0], tuple(t.shape)) for t in keras_model.inputs],
            outputs=[TFTensor(n, tuple(t.shape)) for n, t in zip(keras_model.output_names, keras_model.outputs)],
            converter=self.name, version=self.version(), options=options, notes=notes,
        )


def _move_if_any(source: Path, target: Path) -> Path | None:
    if not source.exists():
        return None
    shutil.move(str(source), target)
    return target


@contextlib.contextmanager
def _inside(work: Path) -> Iterator[None]:
    """Run in `work` with this interpreter's scripts (onnxsim) first on PATH."""
    previous_cwd, previous_path = os.getcwd(), os.environ.get("PATH", "")
    os.chdir(work)
    os.environ["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{previous_path}"
    try:
        yield
    finally:
        os.chdir(previous_cwd)
        os.environ["PATH"] = previous_path


# How onnx2tf 1.x writes each file: one TF graph (Keras model) is built, everything else comes from it (the
# TFLite files from its SavedModel: onnx2tf_v1_tflite.py).
BACKENDS = {"tf_saved_model": "TF graph, tf.saved_model", "keras": "TF graph, Keras v3 save"}


def _made_by(result: ConversionResult, routes: dict[str, str]) -> dict[str, str]:
    made = {"tf_saved_model": result.saved_model, "keras": result.keras, **{f"tflite_{p}": f for p, f in result.tflite.items()}}
    dynamic_range = result.options.int8 is not None and result.options.int8.mode == "dynamic_range"
    return {fmt: f"{result.converter} {result.version} ({_backend(fmt, routes, dynamic_range)})" for fmt, path in made.items() if path}


def _backend(fmt: str, routes: dict[str, str], dynamic_range: bool) -> str:
    if not fmt.startswith("tflite_"):
        return BACKENDS[fmt]
    precision = fmt.removeprefix("tflite_")
    # int8: the dynamic-range file is converted from the Keras model's concrete function; the full-integer
    # files, onnx2tf converts from its SavedModel itself.
    key = DYNAMIC_RANGE if precision == "int8" and dynamic_range else precision
    return f"TF graph, TFLiteConverter on {routes.get(key, FROM_SAVED_MODEL)}"


def _failure_message(exc: BaseException, log_path: Path, onnx_path: Path) -> str:
    log = log_path.read_text(errors="replace") if log_path.exists() else ""
    log = re.sub(r"\x1b\[[0-9;]*m", "", log)
    node = _last(re.findall(r"onnx_op_name: (\S+)", log))
    cause = root_cause(log) or (f"{type(exc).__name__}: {exc}" if not isinstance(exc, SystemExit) else "onnx2tf exited")
    # onnx2tf names the nodes of its own simplified copy; its progress lines give each one's op type.
    op_types = dict((name, op) for op, name in re.findall(r"onnx_op_type: (\S+)\s+onnx_op_name: (\S+)", log))
    where = f"on node '{node}' ({op_types.get(node) or _op_type(onnx_path, node)})" if node else "before reaching any node"
    return f"onnx2tf {metadata.version('onnx2tf')} failed {where}: {cause[:300]}; full log: {log_path}"


# Keras wraps the real error in a generic one ("Exception encountered when calling layer ...");
# the line that names the cause comes later in the traceback.
GENERIC_CAUSES = ("Exception encountered when calling", "The trace log is below")


def root_cause(log: str) -> str | None:
    """The last line of the log that names an exception and is not a generic wrapper."""
    lines = [line.strip() for line in log.splitlines() if re.match(r"\s*[\w.]*(Error|Exception)\b:?", line.strip())]
    specific = [line for line in lines if not any(g in line for g in GENERIC_CAUSES)]
    return _last(specific) or _last(lines)


def _last(items: list[str]) -> str | None:
    return items[-1] if items else None


def _op_type(onnx_path: Path, node_name: str) -> str:
    import onnx

    graph = onnx.load(str(onnx_path), load_external_data=False).graph
    return next((n.op_type for n in graph.node if n.name == node_name), "op unknown")


class _LayerMapSpy:
    """Stands in for onnx2tf's `tf_keras` module during convert() to read its tensor map."""

    def __init__(self) -> None:
        self.tf_layers: dict | None = None

    @contextlib.contextmanager
    def installed(self) -> Iterator[None]:
        import onnx2tf.onnx2tf as module

        real = module.tf_keras

        def model(*args, **kwargs):  # tf_keras.Model, called by onnx2tf's convert()
            if self.tf_layers is None:
                self.tf_layers = sys._getframe(1).f_locals.get("tf_layers_dict")
            return real.Model(*args, **kwargs)

        with replaced(module, "tf_keras", Overlay(real, Model=model)):
            yield


@contextlib.contextmanager
def _named_signature() -> Iterator[None]:
    """During convert(), onnx2tf's SavedModel export archive keys serving_default's outputs by the Keras model's
    output names (the ONNX output names as onnx2tf writes them, ':' as '__'), which its Keras model and TFLite
    files carry, instead of output_0, output_1, ...: a TF Serving client sees the config's names everywhere.
    The inputs keep onnx2tf's TensorSpecs (names, None at dynamic dims, its layouts). Done inside onnx2tf's
    own save, which traces the model once: a second save would cost as much again (seconds on a large model)."""
    import onnx2tf.onnx2tf as module

    real = module.tf_keras
    built: list = []  # the Keras models onnx2tf built, its last one being the model it saves

    class _Archive(real.export.ExportArchive):
        def add_endpoint(self, name, fn, input_signature=None):
            return super().add_endpoint(name, _keyed_by_name(fn, built), input_signature)

    def model(*args, **kwargs):  # tf_keras.Model
        built.append(real.Model(*args, **kwargs))
        return built[-1]

    with replaced(module, "tf_keras", Overlay(real, export=Overlay(real.export, ExportArchive=_Archive), Model=model)):
        yield


def _keyed_by_name(fn, built: list):
    """fn (onnx2tf's `lambda *inputs: model(inputs)`) returning a dict keyed by the saved model's output names;
    its own result when the names cannot key it (no model seen, or not one distinct name per output),
    which the runners read by position as before. AutoGraph calls it as written (onnx2tf_v1_trace.py)."""
    def named(*inputs):
        returned = fn(*inputs)
        outputs = list(returned) if isinstance(returned, (list, tuple)) else [returned]
        names = list(built[-1].output_names) if built else []
        return dict(zip(names, outputs)) if len(set(names)) == len(names) == len(outputs) else returned

    return as_written(named)


def _not_asked(outputs: tuple[str, ...]) -> list[str]:
    skipped = [name for name in ("keras", "tflite_fp32", "tflite_fp16") if name not in outputs]
    return [f"not written, as the config's `artifacts` asks: {', '.join(skipped)} (so not audited, not shipped)"] if skipped else []


class _NoSpy:
    @contextlib.contextmanager
    def installed(self) -> Iterator[None]:
        yield


# onnx2tf's progress lines that end each part of its work, and the part each one ends.
OUTPUT_MARKS = (
    ("Model optimizing started", "onnx2tf: start"),
    ("Model optimizing complete!", "onnx2tf: onnxsim"),
    ("Model conversion started", "onnx2tf: load and prepare"),
    ("keras_v3 output started", "onnx2tf: build the TF graph"),
    ("keras_v3 output complete!", "onnx2tf: Keras v3 file"),
    ("saved_model output started", "onnx2tf: build the TF graph"),
    ("saved_model output complete!", "onnx2tf: SavedModel"),
    ("Float32 tflite output complete!", "onnx2tf: TFLite fp32"),
    ("Float16 tflite output complete!", "onnx2tf: TFLite fp16"),
)


class _OutputClock:
    """Times onnx2tf's parts from its own progress lines (pipeline.profile steps): each output it
    writes (SavedModel, Keras, TFLite fp32, fp16) and the graph building before them."""

    def __init__(self) -> None:
        self._last = 0.0
        self._pending = ""

    @contextlib.contextmanager
    def running(self) -> Iterator[None]:
        real = sys.stdout
        clock = self

        class _Tee:
            def write(self, text: str) -> int:
                clock._seen(text)
                return real.write(text)

            def __getattr__(self, name):
                return getattr(real, name)

        self._last = time.time()
        sys.stdout = _Tee()
        try:
            yield
        finally:
            sys.stdout = real
            profile.record("onnx2tf: after its files (quantization, checks)" if self._pending else "onnx2tf: build the TF graph",
                           self._last, time.time())

    def _seen(self, text: str) -> None:
        for mark, part in OUTPUT_MARKS:
            if mark in text:
                now = time.time()
                profile.record(part, self._last, now)
                self._last, self._pending = now, mark


@dataclasses.dataclass(frozen=True)
class LayerModel:
    """layers.keras and its outputs, or why there is none."""

    path: Path | None
    tensors: list[dict]  # {"tensor": ONNX name, "tf_shape": [...], "channel_last": bool | None}
    note: str | None = None


def onnx_names(onnx_path: Path, simplified_path: Path | None = None) -> dict[str, str]:
    """onnx2tf's name of each tensor it mapped -> the ONNX tensor of onnx_path that holds the same value.

    - onnx2tf writes ':' as '__' and, when it writes signatures (always, here), a leading '/' as 'wa/'
      (onnx2tf.py, where it sanitizes node and tensor names): a TorchScript export's
      '/body/body.0/Conv_output_0' is 'wa/body/body.0/Conv_output_0' in its tensor map;
    - onnxsim (run by onnx2tf on its copy, `simplified_path` afterwards) fuses a BatchNormalization
      into the Conv before it: the Conv's output name then holds the BatchNormalization's output (see
      fused_outputs).
    Read as is, a 34-block Conv+BN+ReLU chain aligned 1 of ONNX Runtime's 68 tensors, then 34."""
    import onnx

    model = onnx.load(str(onnx_path), load_external_data=False)
    names = [v.name for v in model.graph.input] + [o for n in model.graph.node for o in n.output if o]
    fused = {}
    if simplified_path is not None and simplified_path.exists():
        fused = fused_outputs(model, onnx.load(str(simplified_path), load_external_data=False))
    mapped: dict[str, str] = {}
    for name in names:
        plain = name.replace(":", "__")
        for renamed in (re.sub("^/", "wa/", plain), plain, name):
            mapped.setdefault(renamed, name)
    for name in names:  # a name that is itself an ONNX tensor's stays that tensor's
        mapped[name] = name
    return {renamed: fused.get(name, name) for renamed, name in mapped.items()}


def fused_outputs(original, simplified) -> dict[str, str]:
    """Tensor T -> O where a node O = f(T, constants) of `original` is gone from `simplified`, and the
    nodes that read O there read T here: T now holds O's value (onnxsim's fuse_bn_into_conv keeps the
    Conv's output name for the fused result)."""
    kept = {v.name for v in simplified.graph.input} | {o for n in simplified.graph.node for o in n.output}
    readers: dict[str, set[str]] = {}
    for node in simplified.graph.node:
        for tensor in node.input:
            readers.setdefault(tensor, set()).add(node.name)
    fused = {}
    for node in original.graph.node:
        if not node.input or len(node.output) != 1:
            continue
        source, result = node.input[0], node.output[0]
        if result in kept or source not in kept:
            continue
        before = {n.name for n in original.graph.node if result in n.input}
        if before and before <= readers.get(source, set()):
            fused[source] = result
    return fused


def _save_layers(keras_model, tf_layers: dict | None, out_dir: Path, names: dict[str, str] | None = None) -> LayerModel:
    """Save a Keras model with every mapped intermediate tensor as an output (best effort), each
    named after its ONNX tensor (`names`: onnx2tf's name -> the ONNX name)."""
    names = names or {}
    import tf_keras

    if not tf_layers:
        return LayerModel(None, [], "onnx2tf's tensor map was not available: no layer model")
    input_names = {t.name.split(":")[0] for t in keras_model.inputs}
    picked = [(name, entry) for name, entry in tf_layers.items()
              if name not in input_names and _is_symbolic(entry.get("tf_node"))]
    try:
        layers = tf_keras.Model(inputs=keras_model.inputs, outputs=[entry["tf_node"] for _, entry in picked])
        path = out_dir / "layers.keras"
        with fast_save():
            layers.save(str(path))
    except Exception as exc:  # a best-effort extra: the audit still runs without it, and says why
        print(f"layer model not saved: {type(exc).__name__}: {exc}")  # the detail goes to convert.log
        return LayerModel(None, [], f"layer model not saved ({type(exc).__name__}: {first_line(exc, 160)}; see the log): "
                                    "TF intermediates are not compared layer by layer")
    tensors = [{"tensor": names.get(name, name), "tf_shape": [d if d is not None else -1 for d in entry["tf_node"].shape],
                "channel_last": entry.get("nhwc")} for name, entry in picked]
    return LayerModel(path, tensors)


def _is_symbolic(node) -> bool:
    return node is not None and not hasattr(node, "numpy") and hasattr(node, "shape")


def _full_integer(options: ConversionOptions) -> bool:
    return options.int8 is not None and options.int8.mode == "full_integer" and not options.pseudo_ops


def _layer_names(tf_layers: dict | None) -> dict[str, str]:
    """Each Keras layer onnx2tf built for an ONNX tensor, by the layer's name (the SavedModel's op names,
    and so the TFLite tensor names, start with "model/<layer name>/")."""
    names = {}
    for onnx_name, entry in (tf_layers or {}).items():
        history = getattr(entry.get("tf_node"), "_keras_history", None)
        if history is not None and _is_symbolic(entry.get("tf_node")):
            names.setdefault(history.layer.name, onnx_name)
    return names


def _feeding(keras_model, named: dict[str, str]) -> dict[str, str]:
    """Each layer onnx2tf built for no ONNX tensor of its own (a step of its expansion of a node, such as
    BatchNormalization's multiply before its add) -> the first ONNX tensor downstream of it."""
    feeding = {}
    for layer in getattr(keras_model, "layers", []):
        if layer.name in named or type(layer).__name__ == "InputLayer":
            continue
        seen, queue = {layer.name}, [layer]
        while queue and layer.name not in feeding:
            for node in getattr(queue.pop(0), "_outbound_nodes", []):
                nxt = node.outbound_layer
                if nxt.name in named:
                    feeding[layer.name] = named[nxt.name]
                    break
                if nxt.name not in seen:
                    seen.add(nxt.name)
                    queue.append(nxt)
    return feeding


# onnx2tf's names for its quantized files (written next to the float ones).
INT8_FILES = {"full_integer": "integer_quant", "dynamic_range": "dynamic_range_quant"}
INT8_INTEGER_IO_FILE = "full_integer_quant"


def _int8_arguments(work: Path, options: ConversionOptions) -> dict:
    """onnx2tf's quantization options. Full-integer calibration reads our files, one per input,
    in the TF layout; given for every input, so its own image sample is never used for it."""
    int8 = options.int8
    if int8 is None:
        return {}
    if int8.mode == "dynamic_range":
        return {"output_dynamic_range_quantized_tflite": True}
    return {
        "output_integer_quantized_tflite": True, "quant_type": "per-channel",
        "custom_input_op_name_np_data_path": _calibration_files(work, int8.calibration, options.keep_nchw_inputs),
        "input_quant_dtype": "int8", "output_quant_dtype": "int8",
    }


def _calibration_files(work: Path, calibration: Path, keep_nchw: tuple[str, ...]) -> list[list]:
    """[[TF input name, .npy path, mean, std]]: samples already preprocessed, so mean 0 and std 1."""
    arrays = np.load(calibration, allow_pickle=False)
    entries = []
    for index, name in enumerate(arrays.files):
        array = arrays[name]
        array = array.reshape(-1, *array.shape[2:])  # (samples, batch, ...) -> (samples * batch, ...)
        if array.ndim in (3, 4, 5) and name not in keep_nchw:
            array = np.moveaxis(array, 1, -1)  # onnx2tf makes 3-D to 5-D inputs channel-last
        path = work / f"calibration_{index}.npy"
        np.save(path, np.ascontiguousarray(array, dtype=np.float32))
        entries.append([_tf_input_name(name), str(path), 0.0, 1.0])
    return entries


def _tf_input_name(onnx_name: str) -> str:
    # onnx2tf's own renaming of graph inputs when signatures are written.
    return re.sub("^/", "wa/", onnx_name.replace(":", "__"))


def _collect_int8(tf_dir: Path, out_dir: Path, int8) -> dict[str, Path | None]:
    if int8 is None:
        return {}
    found = {"int8": _move_if_any(tf_dir / f"{WORK_NAME}_{INT8_FILES[int8.mode]}.tflite", out_dir / "model_int8.tflite")}
    if int8.integer_io and int8.mode == "full_integer":
        found["int8_integer_io"] = _move_if_any(tf_dir / f"{WORK_NAME}_{INT8_INTEGER_IO_FILE}.tflite",
                                                out_dir / "model_int8_integer_io.tflite")
    return found


def _int8_notes(int8, tflite: dict[str, Path | None]) -> list[str]:
    if int8 is None:
        return ["no int8 TFLite: no calibration data was given (config key quantize.int8.calibration); "
                "nothing is calibrated on random data"]
    missing = [p for p in ("int8", "int8_integer_io") if p in tflite and tflite[p] is None]
    notes = [f"int8 ({int8.mode}) calibrated on {int8.origin}" if int8.calibration else f"int8 ({int8.mode}): {int8.origin}"]
    return notes + [f"onnx2tf wrote no {p} TFLite file (see convert.log)" for p in missing]


# Select TF ops onnx2tf can avoid: the Flex op, the ONNX op behind it, and onnx2tf's name for its
# builtin-only replacement (`replace_to_pseudo_operators`).
FLEX_SOURCES = {
    "FlexErf": {"Erf": "erf"}, "FlexAsin": {"Asin": "asin"}, "FlexAcos": {"Acos": "acos"},
    "FlexAtan": {"Atan": "atan"}, "FlexGatherNd": {"GatherND": "gathernd"}, "FlexPow": {"Pow": "pow"},
    "FlexAbs": {"Abs": "abs"}, "FlexNeg": {"Neg": "neg"}, "FlexBatchMatMulV2": {"MatMulInteger": "matmulinteger"},
}
# What each replacement computes instead (onnx2tf/ops/<Op>.py); the audit measures its error.
PSEUDO_OPS = {
    "erf": "Erf as the Abramowitz-Stegun 7.1.26 polynomial with exp (design error <= 1.5e-7)",
    "asin": "Asin from builtin arithmetic (onnx2tf's pseudo Asin)", "acos": "Acos from builtin arithmetic (onnx2tf's pseudo Acos)",
    "atan": "Atan from builtin arithmetic (onnx2tf's pseudo Atan)", "gathernd": "GatherND as Gather and arithmetic on indices",
    "pow": "Pow as repeated Mul", "abs": "Abs as sqrt(x*x)", "neg": "Neg as multiplication by -1",
    "matmulinteger": "MatMulInteger in float arithmetic",
}
BUILTIN_RECORD = "tflite_builtin.json"


def pseudo_ops_for(flex_ops: list[str], op_types: set[str]) -> tuple[tuple[str, ...], list[str]]:
    """onnx2tf's replacements that remove these Flex ops from this graph, and the Flex ops none can."""
    pseudo, unreplaceable = [], []
    for flex in flex_ops:
        found = [name for onnx_op, name in FLEX_SOURCES.get(flex, {}).items() if onnx_op in op_types]
        pseudo += found
        if not found:
            unreplaceable.append(flex)
    return tuple(sorted(set(pseudo))), unreplaceable


def _op_types(onnx_path: Path) -> set[str]:
    import onnx

    return {n.op_type for n in onnx.load(str(onnx_path), load_external_data=False).graph.node}


def _builtin_notes(record: dict) -> list[str]:
    notes = []
    for file, entry in record["files"].items():
        if entry["standard"]:
            notes.append(f"{file}: Select TF ops {record['select_tf_ops'][file]} avoided by {_replacements(record)}; "
                         f"its error is measured by the audit; the original is kept as {entry['select_tf_file']}")
        elif entry.get("io_differs"):
            shipped, builtin = entry["io_differs"]
            notes.append(f"{file}: the builtin-ops file made by {_replacements(record)} takes and gives tensors laid out "
                         f"otherwise (inputs, outputs {builtin} against {shipped}), and the shipped files' layouts would "
                         "not read it; the file with Select TF ops stays")
        else:
            notes.append(f"{file}: still needs Select TF ops {entry['still_needs']} after {_replacements(record)}")
    if record["no_builtin_route"]:
        ops = [op.removeprefix("Flex") for op in record["no_builtin_route"]]
        notes.append(f"no builtin route for {record['no_builtin_route']}: TFLite has no builtin {', '.join(ops)} and onnx2tf "
                     "no builtin-only replacement for it; the TFLite file runs only with the Flex delegate")
    if record["error"]:
        notes.append(f"the builtin-ops conversion failed: {record['error']}")
    return notes


def _replacements(record: dict) -> str:
    """What the builtin-ops conversion changed: onnx2tf's replacements."""
    return f"onnx2tf's builtin replacement {record['pseudo_ops']} ({'; '.join(record['approximations'])})"


def _copied_for_onnx2tf(onnx_path: Path, target: Path, options: ConversionOptions) -> list[str]:
    """onnx_path copied to target for onnx2tf; when a TFLite file is asked for, with the pools TFLite has no
    builtin for rewritten as 2-D pools (pool_rewrite.py: exact, and checked with ONNX Runtime). onnx2tf
    would make them Select TF ops (AvgPool3D, MaxPool3D, Dilation2D). The notes say what was rewritten."""
    if not any(output.startswith("tflite") for output in options.outputs) or not has_pools(onnx_path):
        shutil.copyfile(onnx_path, target)
        return []
    try:
        rewrite = rewrite_pools(onnx_path, target)
    except ConversionError as exc:
        shutil.copyfile(onnx_path, target)
        return [f"{exc}: the TFLite files keep Select TF ops for those pools"]
    if rewrite is None:
        shutil.copyfile(onnx_path, target)
        return []
    nodes = ", ".join(f"'{name}'" for name in rewrite.rewritten)
    return [f"pools {nodes} rewritten before conversion, which TFLite has no builtin for: {'; '.join(rewrite.describe())}; "
            "ONNX Runtime agrees on both graphs"]


def _ops_notes(tflite: dict[str, Path]) -> list[str]:
    notes = []
    for path in tflite.values():
        ops = read_ops(path)
        runs = "runs on the standard interpreter" if ops.standard else f"needs {list(ops.select_tf + ops.custom)}"
        notes.append(f"{path.name}: {runs}; builtin ops {', '.join(ops.builtin) or 'none'}")
    return notes


def _keras_with_frozen_variables(result: ConversionResult, keras_model, out_dir: Path) -> ConversionResult:
    """onnx2tf's Keras v3 (and h5) save fails when an op layer takes a layer's tf.Variable as an
    argument (grouped convolutions in RegNet, ConvNeXt): Keras cannot serialise a VariableSpec.
    Those arguments are replaced by constants of the same values (inference never updates them),
    and the model is saved again. The audit then checks the file like any other."""
    import tensorflow as tf

    frozen = []

    def freeze(value):
        if isinstance(value, tf.Variable):
            frozen.append(value.name)
            return tf.constant(value.numpy())
        return value

    for layer in keras_model.layers:
        for node in layer._inbound_nodes:  # noqa: SLF001 (Keras keeps call arguments only here)
            node.call_args = tf.nest.map_structure(freeze, node.call_args)
            node.call_kwargs = tf.nest.map_structure(freeze, node.call_kwargs)
    path = out_dir / "model.keras"
    try:
        with fast_save():
            keras_model.save(str(path), save_format="keras_v3")
    except Exception as exc:  # Keras raises many types; the report says exactly why there is no Keras file
        path.unlink(missing_ok=True)
        why = f"{type(exc).__name__}: {str(exc).splitlines()[0][:200]}"
        return dataclasses.replace(result, notes=result.notes + [f"no Keras file: onnx2tf's Keras v3 and h5 saves fail, and so "
                                                                 f"does saving with variables frozen as constants ({why})"])
    note = (f"model.keras: onnx2tf's own Keras save fails (a VariableSpec is not serialisable); saved instead with "
            f"{len(frozen)} variable argument(s) of op layers frozen as constants ({', '.join(frozen[:3])}{', ...' if len(frozen) > 3 else ''})")
    notes = [n for n in result.notes if not n.startswith("onnx2tf wrote no Keras file")]
    return dataclasses.replace(result, keras=path, notes=notes + [note])
