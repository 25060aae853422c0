"""Running a shipped model again from its artifact folder: the runner `verify` checks it with and the
int8 metrics measure a file with when the audit saved no outputs for it.

Below int8, manifest, verify and package, so that each of them can use it and none imports back.
"""
from __future__ import annotations

from pathlib import Path


def runner(root: Path, backend: str, records: dict):
    """A runner of one shipped model, from the export and convert records (as JSON) of its artifact folder."""
    from pipeline.inputs import TensorSpec

    specs = [TensorSpec.from_json(raw) for raw in records["export"]["inputs"]]
    outputs = records["export"]["outputs"]
    if backend == "onnxruntime":
        from pipeline.runners.onnxrt import OnnxRuntimeRunner

        return OnnxRuntimeRunner(root / "model.onnx", specs, outputs)
    from pipeline.runners import tensorflow as tf_runners
    from pipeline.runners.tf_io import TFModelIO

    io = TFModelIO.from_json(records["convert"]["io"])
    path = root / records["convert"]["models"][backend]
    if backend == "tf_saved_model":
        return tf_runners.TFSavedModelRunner(path, io, specs, outputs)
    if backend in ("keras", "keras_h5"):
        runner = tf_runners.KerasRunner(path, io, specs, outputs)
        runner.name = backend
        return runner
    return tf_runners.TFLiteRunner(path, io, specs, outputs, backend.removeprefix("tflite_"))
