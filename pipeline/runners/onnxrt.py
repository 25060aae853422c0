"""ONNX Runtime runner (CPU execution provider)."""
from __future__ import annotations

from pathlib import Path
from typing import Callable

import numpy as np
import onnxruntime as ort

from pipeline.inputs import Feed, TensorSpec
from pipeline.runners.base import Runner


Transform = Callable[["onnx.ModelProto"], "onnx.ModelProto"]  # noqa: F821 - a model rewritten before it runs


class OnnxRuntimeRunner(Runner):
    """ONNX Runtime on the file; with `transform` (and a `name`), on that rewrite of it instead
    (the fp16-storage copy, say)."""

    name = "onnxruntime"

    def __init__(self, onnx_path: Path, input_specs: list[TensorSpec], output_names: list[str],
                 transform: Transform | None = None, name: str | None = None) -> None:
        super().__init__(input_specs, output_names)
        self.onnx_path = onnx_path
        self.transform = transform
        self.name = name or self.name
        self.session: ort.InferenceSession | None = None

    def _activate_impl(self) -> None:
        options = ort.SessionOptions()
        options.log_severity_level = 3  # errors only: opset warnings are reported by the pipeline itself
        model = str(self.onnx_path)
        if self.transform is not None:
            import onnx

            model = self.transform(onnx.load(model)).SerializeToString()
        self.session = ort.InferenceSession(model, options, providers=["CPUExecutionProvider"])

    def _infer_impl(self, feed: Feed) -> dict[str, np.ndarray]:
        values = self.session.run(self.output_names, {spec.name: feed[spec.name] for spec in self.input_specs})
        return dict(zip(self.output_names, values))

    def _deactivate_impl(self) -> None:
        self.session = None


class OnnxFloat64Runner(Runner):
    """The ONNX route's oracle: the graph with every float32 tensor made float64.

    ONNX Runtime runs it where it has double kernels; where it has none (Conv, for one), onnx's
    reference evaluator does, in numpy's float64. `engine` says which one ran."""

    name = "onnxruntime_fp64"
    precision = "fp64"

    def __init__(self, onnx_path: Path, input_specs: list[TensorSpec], output_names: list[str],
                 transform: Transform | None = None, name: str | None = None) -> None:
        super().__init__(input_specs, output_names)
        self.onnx_path = onnx_path
        self.transform = transform
        self.name = name or self.name
        self.engine = ""
        self._run = None

    def _activate_impl(self) -> None:
        import onnx

        model = onnx.load(str(self.onnx_path))
        model = as_float64(self.transform(model) if self.transform is not None else model)
        options = ort.SessionOptions()
        options.log_severity_level = 3
        try:
            session = ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])
            self._run, self.engine = (lambda feeds: session.run(self.output_names, feeds)), "ONNX Runtime"
        except Exception:  # noqa: BLE001 - no double kernel for some op: the reference evaluator has one
            from onnx.reference import ReferenceEvaluator

            evaluator = ReferenceEvaluator(model)
            self._run, self.engine = (lambda feeds: evaluator.run(self.output_names, feeds)), "onnx's reference evaluator"

    def _infer_impl(self, feed: Feed) -> dict[str, np.ndarray]:
        feeds = {}
        for spec in self.input_specs:
            value = np.asarray(feed[spec.name])
            feeds[spec.name] = value.astype(np.float64) if value.dtype == np.float32 else value
        return dict(zip(self.output_names, self._run(feeds)))

    def _deactivate_impl(self) -> None:
        self._run = None


def as_float64(model):
    """A copy of an ONNX model whose float32 inputs, outputs, values, initializers, constants and casts are float64."""
    import onnx
    from onnx import TensorProto, numpy_helper

    copy = onnx.ModelProto()
    copy.CopyFrom(model)
    graph = copy.graph
    for value in [*graph.input, *graph.output, *graph.value_info]:
        if value.type.tensor_type.elem_type == TensorProto.FLOAT:
            value.type.tensor_type.elem_type = TensorProto.DOUBLE
    for init in graph.initializer:
        if init.data_type == TensorProto.FLOAT:
            init.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(init).astype(np.float64), init.name))
    for node in graph.node:
        for attribute in node.attribute:
            if attribute.type == onnx.AttributeProto.TENSOR and attribute.t.data_type == TensorProto.FLOAT:
                attribute.t.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(attribute.t).astype(np.float64), attribute.t.name))
            if node.op_type == "Cast" and attribute.name == "to" and attribute.i == TensorProto.FLOAT:
                attribute.i = TensorProto.DOUBLE
    return copy
