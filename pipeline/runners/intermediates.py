"""Runners that return intermediate tensors, keyed by ONNX tensor name (layer-by-layer audits).

- ONNX Runtime: every node output with an inferred type becomes a graph output.
- PyTorch: forward hooks on modules; a module's output is the last ONNX tensor produced
  inside its scope (node metadata or scoped node names), checked by shape.
- TensorFlow: the converter's layer model (layers.keras), one output per mapped tensor.
"""
from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
import onnx

from pipeline.inputs import Feed, TensorSpec
from pipeline.model.graph import TensorOrder
from pipeline.runners.base import Runner
from pipeline.runners.layout import decide
from pipeline.runners.onnxrt import OnnxRuntimeRunner
from pipeline.runners.tf_io import TensorBinding, TFModelIO


def onnx_intermediates_runner(onnx_path: Path, specs: list[TensorSpec], workdir: Path) -> OnnxRuntimeRunner:
    """ONNX Runtime on a copy of the model that outputs every typed intermediate tensor."""
    model = onnx.load(str(onnx_path))
    inferred = onnx.shape_inference.infer_shapes(model)
    typed = {v.name: v for v in inferred.graph.value_info}
    present = {o.name for o in model.graph.output}
    for name in TensorOrder.of(model).tensors:
        if name in typed and name not in present:
            model.graph.output.append(typed[name])
    path = workdir / "model_intermediates.onnx"
    onnx.save(model, str(path))
    return OnnxRuntimeRunner(path, specs, [o.name for o in model.graph.output])


class TorchLayersRunner(Runner):
    """PyTorch with forward hooks; outputs keyed by the ONNX tensor each module maps to.

    Each hook copies the module's output at once: a later in-place op (ReLU(inplace=True),
    `x += y`) would otherwise overwrite the captured tensor before it is read. With
    `float64`, the runner drives the oracle (a float64 copy) with float inputs cast."""

    name = "pytorch"
    partial_outputs = True

    def __init__(self, torch_model, specs: list[TensorSpec], mapping: dict[str, str], float64: bool = False) -> None:
        super().__init__(specs, sorted(set(mapping.values())))
        self.torch_model, self.mapping, self.float64 = torch_model, mapping, float64
        if float64:
            self.name = "pytorch_fp64"
        self._captured: dict[str, list] = {}
        self._hooks: list = []

    def _activate_impl(self) -> None:
        modules = dict(self.torch_model.named_modules())
        for path in self.mapping:
            self._hooks.append(modules[path].register_forward_hook(self._hook(path)))

    def _hook(self, path: str):
        def record(module, args, output):
            copy = output.detach().clone() if hasattr(output, "detach") else output
            self._captured.setdefault(path, []).append(copy)
        return record

    def _infer_impl(self, feed: Feed) -> dict[str, np.ndarray]:
        import torch

        self._captured.clear()
        arrays = [np.array(feed[s.name]) for s in self.input_specs]
        if self.float64:
            arrays = [a.astype(np.float64) if np.issubdtype(a.dtype, np.floating) else a for a in arrays]
        with torch.no_grad():
            self.torch_model(*[torch.from_numpy(a) for a in arrays])
        # A module called more than once (shared) has no single output: it is left out.
        return {self.mapping[path]: outs[0].numpy() for path, outs in self._captured.items()
                if len(outs) == 1 and hasattr(outs[0], "numpy")}

    def _deactivate_impl(self) -> None:
        for hook in self._hooks:
            hook.remove()
        self._hooks.clear()


def tf_layers_runner(artifacts_root: Path, convert, specs: list[TensorSpec], onnx_shapes: dict[str, list[int]],
                     layers: dict) -> Runner | None:
    """A Keras runner over the converter's layer model (convert.layer_model), with a layout decided per tensor."""
    from pipeline.runners.tensorflow import KerasRunner

    if not layers or not layers.get("model"):
        return None
    io = convert.io
    outputs = []
    for index, entry in enumerate(layers["tensors"]):
        shape = onnx_shapes.get(entry["tensor"])
        if shape is None or any(d <= 0 for d in shape):
            continue
        layout = decide(tuple(shape), tuple(entry["tf_shape"]), prefer_channel_last=entry.get("channel_last") is not False)
        if layout.ambiguous and entry.get("channel_last") is not None:
            layout = type(layout)(layout.perm, "converter", False, "onnx2tf's own layout record")
        if layout.decided_by != "unresolved":
            outputs.append(TensorBinding(entry["tensor"], entry["tensor"], index, layout))
    from pipeline.runners.remote import wrap

    runner = KerasRunner(artifacts_root / layers["model"], TFModelIO(io.inputs, outputs), specs, [b.name for b in outputs])
    runner.name = "tf_layers"
    return wrap(runner)


def temp_workdir() -> tempfile.TemporaryDirectory:
    return tempfile.TemporaryDirectory(prefix="layers-")


def tflite_layers_runner(path: Path, convert, specs: list[TensorSpec], precision: str,
                         onnx_shapes: dict[str, list[int]]) -> Runner | None:
    """A TFLite file's intermediates aligned with ONNX tensors, or None when the converter recorded no
    tensor-to-layer names (another converter, a folder converted before they were recorded)."""
    if not convert.tf_layers:
        return None
    from pipeline.runners.tensorflow import TFLiteLayersRunner

    return TFLiteLayersRunner(path, convert.io, specs, precision, convert.tf_layers, onnx_shapes)
