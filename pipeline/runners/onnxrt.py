"""ONNX Runtime runner (CPU execution provider)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import onnxruntime as ort

from pipeline.inputs import Feed, TensorSpec
from pipeline.runners.base import Runner


class OnnxRuntimeRunner(Runner):
    name = "onnxruntime"

    def __init__(self, onnx_path: Path, input_specs: list[TensorSpec], output_names: list[str]) -> None:
        super().__init__(input_specs, output_names)
        self.onnx_path = onnx_path
        self.session: ort.InferenceSession | None = None

    def _activate_impl(self) -> None:
        options = ort.SessionOptions()
        options.log_severity_level = 3  # errors only: opset warnings are reported by the pipeline itself
        self.session = ort.InferenceSession(str(self.onnx_path), options, providers=["CPUExecutionProvider"])

    def _infer_impl(self, feed: Feed) -> dict[str, np.ndarray]:
        values = self.session.run(self.output_names, {spec.name: feed[spec.name] for spec in self.input_specs})
        return dict(zip(self.output_names, values))

    def _deactivate_impl(self) -> None:
        self.session = None
