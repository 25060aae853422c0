"""A finer localization for the repair search: ONNX Runtime against the TF layer model over every
tensor of the ONNX graph that was actually converted.

The audit's oracle pairs judge only tensors a PyTorch module maps to, on model.onnx. A converter
bug sits on one ONNX node, often inside a module (a Transpose, a Reshape) or inside a rewritten
op's expansion, so the search compares ONNX Runtime and Keras on every tensor onnx2tf mapped,
with the float32 tolerances, and takes the first one that departs.
"""
from __future__ import annotations

from pathlib import Path

import onnx

from pipeline.artifacts.folder import ArtifactDir
from pipeline.artifacts.records import ConvertRecord, ExportRecord
from pipeline.audit.layer_stats import collect
from pipeline.config import Source
from pipeline.console import capture_output
from pipeline.convert.layer_model import layer_model
from pipeline.artifacts.repair_record import Divergence
from pipeline.model.graph import TensorOrder, static_shapes
from pipeline.runners.intermediates import onnx_intermediates_runner, temp_workdir, tf_layers_runner

SAMPLES = 2  # enough to find where the layouts part; the audit judges every sample afterwards


def first_departure(source: Source, artifacts: ArtifactDir, onnx_path: Path, feeds: list, skip: frozenset[str] = frozenset()) -> Divergence | None:
    """The first node (graph order) whose TF output departs from ONNX Runtime's, with the nodes
    between it and the nearest agreeing tensors; None without a layer model or a departure.
    Nodes in `skip` (whose parameters a candidate replaced: their TF tensors no longer have the
    layout onnx2tf recorded for them) are passed over."""
    convert = artifacts.read(ConvertRecord)
    layers = layer_model(source, artifacts, onnx_path)
    if not layers.get("model"):
        return None
    specs = artifacts.read(ExportRecord).inputs
    model = onnx.load(str(onnx_path))
    order, shapes = TensorOrder.of(model), static_shapes(model)
    with temp_workdir() as workdir, capture_output(artifacts.root / "repair.log"):
        runners = {"onnxruntime": onnx_intermediates_runner(onnx_path, specs, Path(workdir)),
                   "tf_layers": tf_layers_runner(artifacts.root, convert, specs, shapes, layers)}
        stats = collect(runners, [("onnxruntime", "keras")], feeds[:SAMPLES], {})[0].stats
    first = next((name for name in order.tensors
                  if name in stats and stats[name].exceeds and order.producer[name].name not in skip), None)
    if first is None:
        return None
    node = order.producer[first]
    agreeing = {name for name, s in stats.items() if not s.exceeds}
    error_in = max((stats[t].max_abs for t in node.input if t in stats), default=0.0)
    at_outputs = {o.name: float(stats[o.name].max_abs) for o in model.graph.output if o.name in stats}
    return Divergence("keras", node.name, node.op_type, None, error_in, stats[first].max_abs,
                      "own" if all(t in agreeing or t not in stats for t in node.input) else "inherited",
                      _span(node, order, stats), at_outputs or None)


def _span(node: onnx.NodeProto, order: TensorOrder, stats: dict) -> list[str]:
    """Unmapped nodes between `node` and the nearest tensors the TF layer model has."""
    span, stack, seen = [], [t for t in node.input if t], set()
    while stack and len(span) < 20:
        tensor = stack.pop()
        if tensor in seen or tensor in stats or tensor not in order.producer:
            continue
        seen.add(tensor)
        producer = order.producer[tensor]
        span.append(producer.name)
        stack.extend(t for t in producer.input if t)
    return span


def graph_position(model: onnx.ModelProto, departure: Divergence | None) -> int:
    """Where in graph order the TF model first departs (-1: not localized)."""
    names = [n.name for n in model.graph.node]
    return names.index(departure.node) if departure is not None and departure.node in names else -1
