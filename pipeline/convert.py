"""Stage 3, convert: model.onnx -> saved_model/, model.keras, model_float{32,16}.tflite.

Also records, in convert.json, how each TF input and output maps to the ONNX one
(name, position, layout), so the TF runners can adapt feeds and outputs.
"""
from __future__ import annotations

import dataclasses
import os
import time
from pathlib import Path

import numpy as np

from pipeline import inputs as shared_inputs
from pipeline.artifacts import ArtifactDir, write_json
from pipeline.console import stage_status
from pipeline.converters import ConversionOptions, ConversionResult, get_converter
from pipeline.errors import ConversionError
from pipeline.inputs import TensorSpec
from pipeline.layout import Layout, candidates, decide, resolve_by_probe
from pipeline.runners.tensorflow import TFSavedModelRunner
from pipeline.runners.tf_io import TensorBinding, TFModelIO

FAILED_LOG = "convert.failed.log"


def run(artifacts: ArtifactDir, options: ConversionOptions | None = None) -> dict:
    """Convert the exported ONNX file and write convert.json; return that record."""
    options = options or ConversionOptions()
    onnx_path = artifacts.require(artifacts.onnx, "export")
    export = artifacts.read_record("export")
    specs = [TensorSpec.from_json(raw) for raw in export["inputs"]]
    reference = _reference_outputs(artifacts)
    first_feed = shared_inputs.feeds(shared_inputs.load_npz(artifacts.require(artifacts.inputs, "export")))[0]
    converter = get_converter()
    with artifacts.staging() as stage:
        log_path = stage / "convert.log"
        start = time.perf_counter()
        with stage_status(f"converting with {converter.name} {converter.version()} (log: {artifacts.convert_log})"):
            result = _convert(converter, onnx_path, stage, log_path, options, artifacts)
        seconds = time.perf_counter() - start
        io = bind(result, specs, export["outputs"], reference, first_feed)
        record = _record(result, io, seconds)
        write_json(stage / "convert.json", record)
    return record


def _convert(converter, onnx_path: Path, stage: Path, log_path: Path, options: ConversionOptions, artifacts: ArtifactDir) -> ConversionResult:
    try:
        return converter.convert(onnx_path, stage, log_path, options)
    except ConversionError as exc:
        # Keep the failing run's log next to the last good artifacts, which stay untouched.
        kept = artifacts.root / FAILED_LOG
        if log_path.exists():
            os.replace(log_path, kept)
        raise ConversionError(str(exc).replace(str(log_path), str(kept))) from None


def _reference_outputs(artifacts: ArtifactDir) -> dict[str, np.ndarray]:
    path = artifacts.require(artifacts.output_file("onnxruntime"), "validate")
    return shared_inputs.load_npz(path)


def bind(
    result: ConversionResult, specs: list[TensorSpec], output_names: list[str],
    reference: dict[str, np.ndarray], first_feed: shared_inputs.Feed,
) -> TFModelIO:
    """Match TF inputs/outputs to ONNX ones by position and decide each layout."""
    _check_counts(result, specs, output_names)
    keep = set(result.options.keep_nchw_inputs)
    inputs = [
        TensorBinding(spec.name, tf.name, i, decide(spec.shape, tf.shape, prefer_channel_last=spec.name not in keep))
        for i, (spec, tf) in enumerate(zip(specs, result.inputs))
    ]
    outputs = [
        TensorBinding(name, tf.name, i, decide(tuple(reference[name].shape[1:]), tf.shape, prefer_channel_last=True))
        for i, (name, tf) in enumerate(zip(output_names, result.outputs))
    ]
    io = TFModelIO(inputs, outputs)
    if any(b.layout.ambiguous for b in outputs):
        io = _probe_outputs(result, io, specs, reference, first_feed)
    return io


def _check_counts(result: ConversionResult, specs: list[TensorSpec], output_names: list[str]) -> None:
    if len(result.inputs) != len(specs) or len(result.outputs) != len(output_names):
        raise ConversionError(
            f"the converted model has {len(result.inputs)} inputs and {len(result.outputs)} outputs, "
            f"the ONNX model {len(specs)} and {len(output_names)}; see convert.log"
        )


def _probe_outputs(result: ConversionResult, io: TFModelIO, specs, reference, first_feed) -> TFModelIO:
    """Resolve shape-ambiguous output layouts by comparing against ONNX Runtime on the first sample."""
    raw_io = TFModelIO(io.inputs, [dataclasses.replace(b, layout=Layout(None, "probe")) for b in io.outputs])
    with TFSavedModelRunner(result.saved_model, raw_io, specs, [b.name for b in io.outputs]) as runner:
        raw = runner.infer(first_feed)
    outputs = []
    for binding in io.outputs:
        if binding.layout.ambiguous:
            fits = candidates(tuple(reference[binding.name].shape[1:]), tuple(raw[binding.name].shape))
            binding = dataclasses.replace(binding, layout=resolve_by_probe(reference[binding.name][0], raw[binding.name], fits))
        outputs.append(binding)
    return TFModelIO(io.inputs, outputs)


def _record(result: ConversionResult, io: TFModelIO, seconds: float) -> dict:
    formats = {"tf_saved_model": result.saved_model, "keras": result.keras, **{f"tflite_{p}": f for p, f in result.tflite.items()}}
    return {
        "converter": result.converter, "version": result.version,
        "options": {k: (str(v) if isinstance(v, Path) else v) for k, v in dataclasses.asdict(result.options).items()},
        "seconds": round(seconds, 3),
        "models": {fmt: path.name for fmt, path in formats.items() if path},
        "io": io.to_json(),
        "ambiguous_layouts": [b.name for b in io.inputs + io.outputs if b.layout.ambiguous],
        "layers": {"model": result.layers.name, "tensors": result.layer_tensors} if result.layers else None,
        "notes": result.notes,
    }
