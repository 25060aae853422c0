"""The convert stage's int8 step, right after a full-integer model_int8.tflite is written: each quantized
layer's error (convert/int8_layers.py, in the TF worker), named by ONNX node and PyTorch module, and,
when the file misses its budget, model_int8_selective.tflite with the fewest layers kept in float.

Measured on in-distribution samples only: the seeded random samples of inputs.npz, never its edge
cases (zeros, a constant, the largest magnitude), which lie outside what int8 was calibrated for.
Writes int8.json (records.Int8Record); the selective file joins convert.json's models, so the audit
runs it like any backend (tflite_int8_selective).
"""
from __future__ import annotations

import dataclasses
import time
from pathlib import Path

import numpy as np

from pipeline import inputs as shared_inputs
from pipeline.artifacts.folder import ArtifactDir, write_json
from pipeline.artifacts.records import ConvertRecord, ExportRecord, Int8Record
from pipeline.config import Source
from pipeline.converters import ConversionResult
from pipeline.converters.base import Int8Request
from pipeline.compare import metrics
from pipeline.errors import first_line
from pipeline.names import Backend

SELECTIVE = "model_int8_selective.tflite"
UNMAPPED = "unmapped"


@dataclasses.dataclass(frozen=True)
class Int8Step:
    """What the step reads: the run's source and folders, the conversion and its record so far."""

    source: Source
    artifacts: ArtifactDir
    stage: Path
    request: Int8Request | None
    result: ConversionResult
    record: ConvertRecord


def run(step: Int8Step) -> ConvertRecord:
    """The convert record, with the selective file among its models when one was made; writes int8.json.
    Nothing happens unless a full-integer model_int8.tflite was written from calibration data."""
    request, record = step.request, step.record
    if request is None or request.mode != "full_integer" or Backend.TFLITE_INT8 not in record.models:
        return record
    from pipeline.convert import int8_layers
    from pipeline.runners import remote

    start = time.perf_counter()
    export = step.artifacts.read(ExportRecord)
    evaluation, labels = _in_distribution(step.artifacts)
    budget = _min_snr_db(step.source)
    try:
        found = remote.call(int8_layers.analyse, step.stage / record.models[Backend.TF_SAVED_MODEL],
                            _tf_feeds(shared_inputs.load_npz(request.calibration), record),
                            _tf_feeds(evaluation, record), budget, step.stage / SELECTIVE)
    except Exception as exc:  # TF's converter and debugger raise many types; model_int8.tflite itself stands
        (step.stage / SELECTIVE).unlink(missing_ok=True)
        return dataclasses.replace(record, notes=record.notes + [
            f"int8 per layer not measured ({type(exc).__name__}: {first_line(exc, 200)}): "
            "no layer table and no selective int8 file; model_int8.tflite is audited as it is"])
    names = _Names(step, export)
    selective = SELECTIVE if found["selective"] else None
    models = {**record.models, **({Backend.TFLITE_INT8_SELECTIVE: SELECTIVE} if selective else {})}
    int8 = Int8Record(
        calibration=request.origin, evaluated_on=f"{len(labels)} seeded random samples of inputs.npz (edge cases left out)",
        min_snr_db=budget, layers=[names.named(layer) for layer in found["layers"]],
        float_layers=[names.named(layer) for layer in found["float_layers"]] if selective else [],  # the shipped file's only
        files=_files(step, record, models, export, evaluation), selective=selective,
        notes=_notes(found, budget), seconds=round(time.perf_counter() - start, 3))
    write_json(step.stage / "int8.json", int8)
    return dataclasses.replace(record, models=models, notes=record.notes + _convert_notes(int8))


def _min_snr_db(source: Source) -> float:
    from pipeline.compare import DEFAULT_BUDGETS

    given = source.config.precision_budget.get("int8") if source.config is not None else None
    if given is not None and given.min_snr_db is not None:
        return float(given.min_snr_db)
    return float(DEFAULT_BUDGETS["int8"].min_snr_db)


def _in_distribution(artifacts: ArtifactDir) -> tuple[dict[str, np.ndarray], list[str]]:
    """inputs.npz without its edge-case samples (the export appends them after the seeded random ones)."""
    arrays = shared_inputs.load_npz(artifacts.require(artifacts.inputs, "export"))
    labels = shared_inputs.sample_labels(len(next(iter(arrays.values()))), edge_cases=True)
    keep = [i for i, label in enumerate(labels) if label.startswith("random_")]
    return {name: array[keep] for name, array in arrays.items()}, [labels[i] for i in keep]


def _tf_feeds(arrays: dict[str, np.ndarray], record: ConvertRecord) -> list[dict[str, np.ndarray]]:
    """Each sample as the SavedModel's signature takes it: TF names and layouts (convert.json's bindings)."""
    return [{b.tf_name: np.ascontiguousarray(b.layout.to_backend(feed[b.name]), dtype=np.float32) for b in record.io.inputs}
            for feed in shared_inputs.feeds(arrays)]


class _Names:
    """TFLite tensor names -> ONNX nodes and PyTorch modules. A TFLite tensor is named after the SavedModel
    ops fused into it ("model/<layer>/Relu;model/<layer>/convolution"); the converter told which ONNX tensor
    each layer computes; the SavedModel's outputs are the model's outputs by signature key."""

    def __init__(self, step: Int8Step, export: ExportRecord) -> None:
        import onnx

        from pipeline.lint.stage import build_context

        model = onnx.load(str(step.artifacts.onnx))
        self.producers = {out: node for node in model.graph.node for out in node.output}
        self.order = {node.name: i for i, node in enumerate(model.graph.node)}
        self.layers, self.feeding = step.result.tf_layers, step.result.tf_layers_feeding
        # signature key -> ONNX output: by name, or by position (output_<n>) in a SavedModel keyed that way
        self.outputs = {**{f"output_{b.index}": b.name for b in step.record.io.outputs},
                        **{b.tf_name: b.name for b in step.record.io.outputs}}
        self.module_of = build_context(step.source, step.artifacts, model).module_namer()

    def named(self, layer: dict) -> dict:
        """The layer with its ONNX nodes, ops and module (None: the nodes belong to no module); a layer that
        computes no ONNX tensor of its own is "unmapped", with the node it feeds (`feeds`, `feeds_module`)
        when the converter told."""
        nodes = self._nodes(self._onnx_tensors(layer, self.layers))
        if nodes:
            return {**layer, "onnx_nodes": [n.name for n in nodes], "onnx_ops": [n.op_type for n in nodes],
                    "module": self._modules(nodes)}
        fed = self._nodes(self._onnx_tensors(layer, self.feeding))
        return {**layer, "onnx_nodes": [], "onnx_ops": [], "module": UNMAPPED, "feeds": [n.name for n in fed],
                "feeds_module": self._modules(fed)}

    def _nodes(self, tensors: list[str]) -> list:
        return sorted({n.name: n for t in tensors if (n := self.producers.get(t))}.values(), key=lambda n: self.order[n.name])

    def _modules(self, nodes) -> str | None:
        """The nodes' PyTorch modules; None for nodes of no module (an add in the model's own forward)."""
        return ", ".join(dict.fromkeys(m for n in nodes if (m := self.module_of(n)))) or None

    def _onnx_tensors(self, layer: dict, layers: dict[str, str]) -> list[str]:
        if layer.get("output") is not None:
            return [self.outputs.get(layer["output"], "")] if layers is self.layers else []
        parts = [component for op in layer["tensor"].split(";") for component in op.split("/")]
        return [layers[c] for c in parts if c in layers]


def _files(step: Int8Step, record: ConvertRecord, models: dict[str, str], export: ExportRecord,
           evaluation: dict[str, np.ndarray]) -> dict[str, dict]:
    """Each int8 file's size, SNR and top-1 against the reference (PyTorch) on the in-distribution samples."""
    from pipeline.runners.tensorflow import TFLiteRunner

    reference = shared_inputs.load_npz(step.artifacts.require(step.artifacts.output_file(export.reference), "validate"))
    keep = len(next(iter(evaluation.values())))
    reference = {name: array[:keep] for name, array in reference.items()}  # random samples come first
    files = {}
    for backend in (Backend.TFLITE_INT8, Backend.TFLITE_INT8_SELECTIVE):
        if backend not in models:
            continue
        path = step.stage / models[backend]
        runner = TFLiteRunner(path, record.io, export.inputs, export.outputs, backend.removeprefix("tflite_"))
        runner.activate()
        try:
            outputs = shared_inputs.stack([runner.infer(feed) for feed in shared_inputs.feeds(evaluation)])
        finally:
            runner.deactivate()
        measured = {name: metrics(ref, outputs[name]) for name, ref in reference.items()}
        files[path.name] = {"backend": str(backend), "size": path.stat().st_size,
                            "snr_db": min(m["snr_db"] for m in measured.values()),
                            "top1_agreement": _worst(m["top1_agreement"] for m in measured.values()), "outputs": measured}
    return files


def _worst(values) -> float | None:
    known = [v for v in values if v is not None]
    return min(known) if known else None


def _notes(found: dict, budget: float) -> list[str]:
    before = found["snr_before_db"]
    if before >= budget:
        return [f"int8 is within budget ({before:.1f} dB >= {budget:g} dB against the float TFLite model): no layer kept in float"]
    if not found["within_budget"]:
        after = found["snr_after_db"]
        return [f"int8 misses its budget ({before:.1f} dB < {budget:g} dB) and keeping up to {len(found['float_layers'])} "
                f"layers in float did not bring it within ({'no model made' if after is None else f'{after:.1f} dB'}): "
                "no selective file; look at the worst layers below, or calibrate on more representative data"]
    return [f"int8 misses its budget ({before:.1f} dB < {budget:g} dB against the float TFLite model); keeping "
            f"{len(found['float_layers'])} layer(s) in float brings it to {found['snr_after_db']:.1f} dB "
            f"({found['tries']} quantizations tried): {SELECTIVE}"]


def _convert_notes(int8: Int8Record) -> list[str]:
    if int8.selective is None:
        return []
    kept = ", ".join(f"{'+'.join(l['onnx_nodes']) or l['tensor']} ({l['module'] or 'no module'})" for l in int8.float_layers)
    return [f"{SELECTIVE}: int8 with {len(int8.float_layers)} layer(s) kept in float: {kept} (int8.json)"]
