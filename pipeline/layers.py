"""Layer-by-layer: intermediate tensors of every backend, aligned by ONNX tensor name.

- ONNX Runtime: every node output with an inferred type becomes a graph output.
- PyTorch: forward hooks on modules; a module's output is the last ONNX tensor produced
  inside its scope (node metadata or scoped node names), checked by shape.
- TensorFlow: the converter's layer model (layers.keras), one output per mapped tensor.

Statistics are accumulated one sample at a time, so memory stays bounded by one
sample's intermediates, never all of them for all samples.
"""
from __future__ import annotations

import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import onnx

from pipeline.compare import Tolerance, tolerance_for
from pipeline.inputs import Feed, TensorSpec
from pipeline.layout import decide
from pipeline.lint.attribution import scope_chain
from pipeline.lint.context import static_shapes
from pipeline.runners.base import Runner
from pipeline.runners.onnxrt import OnnxRuntimeRunner
from pipeline.runners.tf_io import TensorBinding, TFModelIO


@dataclass(frozen=True)
class TensorOrder:
    """Node outputs in topological (graph) order, with the node that makes each."""

    tensors: list[str]
    producer: dict[str, onnx.NodeProto]
    graph_inputs: set[str]

    @classmethod
    def of(cls, model: onnx.ModelProto) -> "TensorOrder":
        tensors, producer = [], {}
        for node in model.graph.node:
            for out in node.output:
                if out:
                    tensors.append(out)
                    producer[out] = node
        sources = {v.name for v in model.graph.input} | {i.name for i in model.graph.initializer}
        return cls(tensors, producer, sources)


@dataclass
class TensorStats:
    max_abs: float = 0.0
    ref_max_abs: float = 0.0
    exceeds: bool = False

    def update(self, ref: np.ndarray, cand: np.ndarray, tol: Tolerance) -> None:
        ref64, cand64 = ref.astype(np.float64), cand.astype(np.float64)
        if ref64.shape != cand64.shape:
            self.exceeds, self.max_abs = True, float("inf")
            return
        diff = np.abs(cand64 - ref64)
        finite = np.isfinite(diff)
        self.max_abs = max(self.max_abs, float(diff[finite].max()) if finite.any() else float("inf"))
        self.ref_max_abs = max(self.ref_max_abs, float(np.abs(ref64[np.isfinite(ref64)]).max()) if ref64.size else 0.0)
        self.exceeds = self.exceeds or bool(np.any(~finite) or np.any(diff > tol.atol + tol.rtol * np.abs(ref64)))


@dataclass
class PairLayers:
    reference: str
    candidate: str
    stats: dict[str, TensorStats] = field(default_factory=dict)


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


def module_tensors(model: onnx.ModelProto, module_paths: set[str]) -> dict[str, str]:
    """Module path -> the ONNX tensor holding its output (the last one made inside its scope)."""
    last: dict[str, str] = {}
    for node in model.graph.node:
        for path in scope_chain(node):
            if path in module_paths and node.output:
                last[path] = node.output[0]
    return last


class TorchLayersRunner(Runner):
    """PyTorch with forward hooks; outputs keyed by the ONNX tensor each module maps to."""

    name = "pytorch"
    partial_outputs = True

    def __init__(self, torch_model, specs: list[TensorSpec], mapping: dict[str, str]) -> None:
        super().__init__(specs, sorted(set(mapping.values())))
        self.torch_model, self.mapping = torch_model, mapping
        self._captured: dict[str, list] = {}
        self._hooks: list = []

    def _activate_impl(self) -> None:
        modules = dict(self.torch_model.named_modules())
        for path in self.mapping:
            self._hooks.append(modules[path].register_forward_hook(self._hook(path)))

    def _hook(self, path: str):
        def record(module, args, output):
            self._captured.setdefault(path, []).append(output)
        return record

    def _infer_impl(self, feed: Feed) -> dict[str, np.ndarray]:
        import torch

        self._captured.clear()
        with torch.no_grad():
            self.torch_model(*[torch.from_numpy(np.array(feed[s.name])) for s in self.input_specs])
        # A module called more than once (shared) has no single output: it is left out.
        return {self.mapping[path]: outs[0].detach().numpy() for path, outs in self._captured.items()
                if len(outs) == 1 and hasattr(outs[0], "detach")}

    def _deactivate_impl(self) -> None:
        for hook in self._hooks:
            hook.remove()
        self._hooks.clear()


def tf_layers_runner(artifacts_root: Path, convert: dict, specs: list[TensorSpec], onnx_shapes: dict[str, list[int]]) -> Runner | None:
    """A Keras runner over the converter's layer model, with a layout decided per tensor."""
    from pipeline.runners.tensorflow import KerasRunner

    layers = convert.get("layers")
    if not layers:
        return None
    io = TFModelIO.from_json(convert["io"])
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
    runner = KerasRunner(artifacts_root / layers["model"], TFModelIO(io.inputs, outputs), specs, [b.name for b in outputs])
    runner.name = "tf_layers"
    return runner


def onnx_shapes(model: onnx.ModelProto) -> dict[str, list[int]]:
    return static_shapes(model)


def collect(runners: dict[str, Runner], pairs: list[tuple[str, str]], feeds: list[Feed], overrides) -> list[PairLayers]:
    """Run the intermediate runners sample by sample and fold every aligned tensor into stats."""
    results = [PairLayers(ref, cand) for ref, cand in pairs]
    for runner in runners.values():
        runner.activate()
    try:
        for feed in feeds:
            outputs = {name: runner.infer(feed) for name, runner in runners.items()}
            for pair in results:
                _fold(pair, outputs[_runner_of(pair.reference)], outputs[_runner_of(pair.candidate)], overrides)
    finally:
        for runner in runners.values():
            runner.deactivate()
    return results


def _runner_of(backend: str) -> str:
    return "tf_layers" if backend == "keras" else backend


def _fold(pair: PairLayers, ref: dict, cand: dict, overrides) -> None:
    tol = tolerance_for(pair.candidate, overrides)
    for name in ref.keys() & cand.keys():
        pair.stats.setdefault(name, TensorStats()).update(ref[name], cand[name], tol)


def layers_json(pair: PairLayers, order: TensorOrder, module_of) -> dict:
    tensors = []
    for index, name in enumerate(order.tensors):
        if name in pair.stats:
            node = order.producer[name]
            tensors.append({"index": index, "tensor": name, "node": node.name, "op_type": node.op_type,
                            "module": module_of(node), **asdict(pair.stats[name])})
    return {"reference": pair.reference, "candidate": pair.candidate, "tensors": tensors}


def temp_workdir() -> tempfile.TemporaryDirectory:
    return tempfile.TemporaryDirectory(prefix="layers-")
