"""The audit's layer-by-layer pass: intermediate tensors of each backend pair, and where
they first part ways. Runs when a comparison fails, or with `audit --layers`."""
from __future__ import annotations

from pathlib import Path

import onnx
import torch

from pipeline.artifacts import ArtifactDir
from pipeline.config import Source
from pipeline.inputs import TensorSpec
from pipeline.layers import (
    TensorOrder, TorchLayersRunner, collect, layers_json, module_tensors, onnx_intermediates_runner, onnx_shapes,
    temp_workdir, tf_layers_runner,
)
from pipeline.lint.context import LintContext
from pipeline.localize import localize
from pipeline.torch_model import reference_model


def run_layers(source: Source, artifacts: ArtifactDir, export: dict, convert: dict, feeds: list, overrides) -> dict:
    model = onnx.load(str(artifacts.onnx))
    specs = [TensorSpec.from_json(raw) for raw in export["inputs"]]
    order = TensorOrder.of(model)
    shapes = onnx_shapes(model)
    torch_model = reference_model(source, export)
    example = tuple(torch.from_numpy(feeds[0][spec.name]) for spec in specs) if torch_model is not None else ()
    context = LintContext(model, torch_model, example)
    with temp_workdir() as workdir:
        runners = {"onnxruntime": onnx_intermediates_runner(artifacts.onnx, specs, Path(workdir))}
        if torch_model is not None:
            runners["pytorch"] = TorchLayersRunner(torch_model, specs, _mapping(model, torch_model, shapes, context))
        tf_runner = tf_layers_runner(artifacts.root, convert, specs, shapes)
        if tf_runner is not None:
            runners["tf_layers"] = tf_runner
        pairs = _pairs(export["reference"], runners)
        stats = collect(runners, pairs, feeds, overrides)
    module_of = _module_namer(context) if torch_model is not None else (lambda node: None)
    pair_records = [layers_json(pair, order, module_of) for pair in stats]
    lint = artifacts.read_record_if_any("lint") or {"findings": []}
    notes = [] if tf_runner is not None else ["no TF layer model from the converter: TF intermediates not compared"]
    return {
        "layers": {"ran": True, "reason": "a comparison failed or --layers was given", "pairs": pair_records, "notes": notes},
        "localization": [localize(p, order, module_of, lint["findings"]) for p in pair_records],
    }


OP_MODULES = {"Conv": ("Conv1d", "Conv2d", "Conv3d"), "ConvTranspose": ("ConvTranspose1d", "ConvTranspose2d", "ConvTranspose3d")}


def _module_namer(context: LintContext):
    """A node's module; for a Conv with a BatchNorm folded in, both ("stem.0 + stem.1 (folded)")."""
    def module_of(node: onnx.NodeProto) -> str | None:
        generic = context.attribute(node).module
        if node.op_type not in OP_MODULES:
            return generic
        conv = context.attribute(node, want=OP_MODULES[node.op_type]).module
        if conv and generic and generic != conv:
            return f"{conv} + {generic} (folded)"
        return conv or generic
    return module_of


def _mapping(model: onnx.ModelProto, torch_model, shapes: dict, context: LintContext) -> dict[str, str]:
    """Module path -> ONNX tensor, keeping only tensors whose shape the module's output can match.

    When a BatchNorm was folded into its Conv, the fused node may carry the Conv's scope; its
    tensor then holds the BatchNorm's output, so it is mapped to the BatchNorm, never the Conv."""
    paths = {path for path, _ in torch_model.named_modules() if path}
    mapping = {path: tensor for path, tensor in module_tensors(model, paths).items() if tensor in shapes}
    bn_nodes = {context.attribute(n).module for n in model.graph.node if n.op_type == "BatchNormalization"}
    convs = (torch.nn.Conv1d, torch.nn.Conv2d, torch.nn.Conv3d)
    for conv, bn in context.edges_of(convs, (torch.nn.modules.batchnorm._BatchNorm,)):
        if conv in mapping and bn not in bn_nodes:
            mapping[bn] = mapping.pop(conv)
    return mapping


def _pairs(reference: str, runners: dict) -> list[tuple[str, str]]:
    pairs = []
    if reference == "pytorch" and "pytorch" in runners:
        pairs.append(("pytorch", "onnxruntime"))
    if "tf_layers" in runners:
        pairs.append(("onnxruntime", "keras"))
        if "pytorch" in runners:
            pairs.append(("pytorch", "keras"))
    return pairs
