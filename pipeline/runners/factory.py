"""Which runner serves which backend, built from what the earlier stages wrote."""
from __future__ import annotations

from pipeline.artifacts.folder import ArtifactDir
from pipeline.config import Source
from pipeline.inputs import TensorSpec
from pipeline.runners.base import Runner

TF_BACKENDS = ("tf_saved_model", "keras", "tflite_fp32", "tflite_fp16")
BACKEND_LABELS = {
    "pytorch": "PyTorch", "onnxruntime": "ONNX Runtime", "tf_saved_model": "TF SavedModel",
    "keras": "Keras", "tflite_fp32": "TFLite fp32", "tflite_fp16": "TFLite fp16",
}


def make_runner(backend: str, source: Source, artifacts: ArtifactDir, export: dict, convert: dict | None = None) -> Runner:
    specs = [TensorSpec.from_json(raw) for raw in export["inputs"]]
    outputs = export["outputs"]
    if backend == "pytorch":
        from pipeline.runners.torch_runner import TorchRunner

        return TorchRunner(source, specs, outputs)
    if backend == "onnxruntime":
        from pipeline.runners.onnxrt import OnnxRuntimeRunner

        return OnnxRuntimeRunner(artifacts.onnx, specs, outputs)
    return _tf_runner(backend, artifacts, convert, specs, outputs)


def _tf_runner(backend: str, artifacts: ArtifactDir, convert: dict, specs: list[TensorSpec], outputs: list[str]) -> Runner:
    from pipeline.runners import tensorflow as tf_runners
    from pipeline.runners.tf_io import TFModelIO

    io = TFModelIO.from_json(convert["io"])
    path = artifacts.root / convert["models"][backend]
    if backend == "tf_saved_model":
        return tf_runners.TFSavedModelRunner(path, io, specs, outputs)
    if backend == "keras":
        return tf_runners.KerasRunner(path, io, specs, outputs)
    precision = backend.removeprefix("tflite_")
    return tf_runners.TFLiteRunner(path, io, specs, outputs, precision)


def available_tf_backends(convert: dict) -> list[str]:
    return [b for b in TF_BACKENDS if b in convert["models"]]
