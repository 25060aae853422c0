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


class OnnxFloat64Runner(Runner):
    """The ONNX route's oracle: the graph with every float32 tensor made float64.

    ONNX Runtime runs it where it has double kernels; where it has none (Conv, for one), onnx's
    reference evaluator does, in numpy's float64. `engine` says which one ran."""

    name = "onnxruntime_fp64"
    precision = "fp64"

    def __init__(self, onnx_path: Path, input_specs: list[TensorSpec], output_names: list[str]) -> None:
        super().__init__(input_specs, output_names)
        self.onnx_path = onnx_path
        self.engine = ""
        self._run = None

    def _activate_impl(self) -> None:
        import onnx

        model = as_float64(onnx.load(str(self.onnx_path)))
        options = ort.SessionOptions()
        options.log_severity_level = 3
        try:
            session = ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])
            self._run, self.engine = (lambda feeds: session.run(self.output_names, feeds)), "ONNX Runtime"
        except Exception:  # noqa: BLE001 - no double kernel for some op: the reference evaluator has one
            from onnx.reference import ReferenceEvaluator

            evaluator = ReferenceEvaluator(with_2d_softmax(model))
            self._run, self.engine = (lambda feeds: evaluator.run(self.output_names, feeds)), "onnx's reference evaluator"

    def _infer_impl(self, feed: Feed) -> dict[str, np.ndarray]:
        feeds = {}
        for spec in self.input_specs:
            value = np.asarray(feed[spec.name])
            feeds[spec.name] = value.astype(np.float64) if value.dtype == np.float32 else value
        return dict(zip(self.output_names, self._run(feeds)))

    def _deactivate_impl(self) -> None:
        self._run = None


# Ops whose opset-1..12 form coerces the input to 2-D at `axis` (default 1) and normalizes over
# everything from `axis` on; opset 13 normalizes over `axis` alone (default -1).
COERCED_TO_2D = ("Softmax", "LogSoftmax", "Hardmax")


def with_2d_softmax(model):
    """The model with each opset < 13 Softmax/LogSoftmax/Hardmax written as Flatten(axis) -> op(axis=1)
    -> Reshape(original shape), which means the same under every opset.

    onnx's reference evaluator has a single implementation of these ops, the opset-13 one, and it
    takes the attribute defaults from the newest schema: an opset-9 Softmax with no axis runs over
    axis -1, not over axes 1.. (light_squeezenet's [N, 1000, 1, 1] output became 1.0 per class instead
    of 0.001). ONNX Runtime implements each opset as written and needs no rewrite."""
    import onnx
    from onnx import helper

    opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 13)
    coerced = lambda node: node.op_type in COERCED_TO_2D and node.domain in ("", "ai.onnx")  # noqa: E731
    if opset >= 13 or opset < 5 or not any(coerced(n) for n in model.graph.node):  # Reshape's shape input: opset 5
        return model
    copy = onnx.ModelProto()
    copy.CopyFrom(model)
    nodes = []
    for node in copy.graph.node:
        if not coerced(node):
            nodes.append(node)
            continue
        axis = next((a.i for a in node.attribute if a.name == "axis"), 1)
        x, y, stem = node.input[0], node.output[0], f"{node.name or node.output[0]}__2d"
        nodes += [helper.make_node("Shape", [x], [f"{stem}_shape"], name=f"{stem}_shape"),
                  helper.make_node("Flatten", [x], [f"{stem}_flat"], name=f"{stem}_flatten", axis=axis),
                  helper.make_node(node.op_type, [f"{stem}_flat"], [f"{stem}_out"], name=node.name, axis=1),
                  helper.make_node("Reshape", [f"{stem}_out", f"{stem}_shape"], [y], name=f"{stem}_reshape")]
    del copy.graph.node[:]
    copy.graph.node.extend(nodes)
    return copy


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
