"""The audit's layer-by-layer pass: intermediate tensors of each backend pair, and where
they first part ways. Runs when a comparison fails, or with `audit --layers`."""
from __future__ import annotations

from pathlib import Path

import onnx
import torch

from pipeline.artifacts.folder import ArtifactDir
from pipeline.config import Source
from pipeline.inputs import TensorSpec
from pipeline.audit.layer_stats import collect, layers_json
from pipeline.model.attribution import module_tensors
from pipeline.model.context import ModelContext
from pipeline.model.graph import TensorOrder, static_shapes
from pipeline.runners.intermediates import TorchLayersRunner, onnx_intermediates_runner, temp_workdir, tf_layers_runner
from pipeline.audit.localize import localize
from pipeline.model.torch_model import reference_model


def run_layers(source: Source, artifacts: ArtifactDir, export: dict, convert: dict, feeds: list, overrides) -> dict:
    model = onnx.load(str(artifacts.onnx))
    specs = [TensorSpec.from_json(raw) for raw in export["inputs"]]
    order = TensorOrder.of(model)
    shapes = static_shapes(model)
    torch_model = reference_model(source, export)
    example = tuple(torch.from_numpy(feeds[0][spec.name]) for spec in specs) if torch_model is not None else ()
    context = ModelContext(model, torch_model, example)
    with temp_workdir() as workdir:
        runners = {"onnxruntime": onnx_intermediates_runner(artifacts.onnx, specs, Path(workdir))}
        if torch_model is not None:
            runners["pytorch"] = TorchLayersRunner(torch_model, specs, _mapping(model, torch_model, shapes, context))
        tf_runner = tf_layers_runner(artifacts.root, convert, specs, shapes)
        if tf_runner is not None:
            runners["tf_layers"] = tf_runner
        pairs = _pairs(export["reference"], runners)
        stats = collect(runners, pairs, feeds, overrides)
    module_of = context.module_namer()
    pair_records = [layers_json(pair, order, module_of) for pair in stats]
    lint = artifacts.read_record_if_any("lint") or {"findings": []}
    notes = [] if tf_runner is not None else ["no TF layer model from the converter: TF intermediates not compared"]
    return {
        "layers": {"ran": True, "reason": "a comparison failed or --layers was given", "pairs": pair_records, "notes": notes},
        "localization": [localize(p, order, module_of, lint["findings"]) for p in pair_records],
    }


def _mapping(model: onnx.ModelProto, torch_model, shapes: dict, context: ModelContext) -> dict[str, str]:
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
