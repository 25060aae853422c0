"""Which runner serves which backend, built from what the earlier stages wrote."""
from __future__ import annotations

from typing import TYPE_CHECKING

from pipeline.artifacts.folder import ArtifactDir
from pipeline.config import Source
from pipeline.inputs import TensorSpec
from pipeline.names import TF_BACKENDS, Backend
from pipeline.runners.base import Runner

if TYPE_CHECKING:
    from pipeline.artifacts.records import ConvertRecord, ExportRecord

def make_runner(backend: str, source: Source, artifacts: ArtifactDir, export: ExportRecord,
                convert: ConvertRecord | None = None) -> Runner:
    specs, outputs = export.inputs, export.outputs
    if backend == Backend.ORACLE_ONNX:
        from pipeline.runners.onnxrt import OnnxFloat64Runner

        return OnnxFloat64Runner(artifacts.onnx, specs, outputs)
    if backend == Backend.ORACLE:
        from pipeline.runners.torch_runner import TorchFloat64Runner

        return TorchFloat64Runner(source, specs, outputs)
    if backend == "pytorch":
        from pipeline.runners.torch_runner import TorchRunner

        return TorchRunner(source, specs, outputs)
    if backend == "onnxruntime":
        from pipeline.runners.onnxrt import OnnxRuntimeRunner

        return OnnxRuntimeRunner(artifacts.onnx, specs, outputs)
    return _tf_runner(backend, artifacts, convert, specs, outputs)


def _tf_runner(backend: str, artifacts: ArtifactDir, convert: ConvertRecord, specs: list[TensorSpec],
               outputs: list[str]) -> Runner:
    from pipeline.runners import tensorflow as tf_runners
    from pipeline.runners.remote import wrap

    io = convert.io
    path = artifacts.root / convert.models[backend]
    if backend == "tf_saved_model":
        return wrap(tf_runners.TFSavedModelRunner(path, io, specs, outputs))
    if backend == "keras":
        return wrap(tf_runners.KerasRunner(path, io, specs, outputs))
    precision = backend.removeprefix("tflite_")
    return tf_runners.TFLiteRunner(path, io, specs, outputs, precision)


def available_tf_backends(convert: ConvertRecord) -> list[str]:
    return [b for b in TF_BACKENDS if b in convert.models]


def perturbed_oracle(source: Source, export: ExportRecord, seed: int) -> Runner:
    """The float64 oracle with weights and inputs moved by one float32 rounding (see audit.noise.sample_floors)."""
    from pipeline.runners.torch_runner import TorchFloat64Runner

    return TorchFloat64Runner(source, export.inputs, export.outputs, perturb_seed=seed)
