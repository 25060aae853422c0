"""The audit's layer-by-layer pass: intermediate tensors of each backend, and where a failing
backend first departs. Runs when a comparison fails, or with `audit --layers`.

With a float64 oracle, every backend's intermediates are measured against the oracle's (the same
forward hooks on the float64 copy), each tensor against its own floor: how far PyTorch float32
lands from the oracle there. Without one (the ONNX route), pairs of backends are compared with the
allclose tolerances. Only a backend that failed at its outputs is localized: one that passed is
never named as the culprit of another's failure.
"""
from __future__ import annotations

from pathlib import Path

import onnx
import torch

from pipeline.artifacts.records import LintRecord, merged_lint
from pipeline.audit.layer_request import LayerRequest
from pipeline.audit.layer_stats import apply_floors, collect, layers_json
from pipeline.audit.localize import localize, not_localized
from pipeline.model.float64 import float64_copy, perturbed
from pipeline.convert.layer_model import layer_model
from pipeline.model.attribution import module_tensors
from pipeline.model.context import ModelContext
from pipeline.model.graph import TensorOrder, static_shapes
from pipeline.model.torch_model import reference_model
from pipeline.names import Backend
from pipeline.runners.intermediates import TorchLayersRunner, onnx_intermediates_runner, temp_workdir, tf_layers_runner

BAND = (Backend.ORACLE, Backend.PYTORCH)  # the float32 noise band: PyTorch float32 against the oracle
PERTURBED = "pytorch_fp64_perturbed"
PERTURBED_BAND = (Backend.ORACLE, PERTURBED)  # and the oracle with float32-sized roundings (model.float64.perturbed)


def run_layers(request: LayerRequest) -> dict:
    artifacts, export = request.artifacts, request.export
    model = onnx.load(str(artifacts.onnx))
    order, shapes = TensorOrder.of(model), static_shapes(model)
    torch_model = reference_model(request.source, export)
    example = tuple(torch.from_numpy(request.feeds[0][spec.name]) for spec in export.inputs) if torch_model is not None else ()
    context = ModelContext(model, torch_model, example)
    with_oracle = torch_model is not None and request.oracle.available
    with temp_workdir() as workdir:
        runners, notes = _runners(request, model, torch_model, shapes, context, Path(workdir), with_oracle)
        pairs = _oracle_pairs(runners) if with_oracle else _pairs(export.reference, runners)
        stats = collect(runners, pairs, request.feeds, request.overrides)
    if with_oracle:
        stats = judged_by_floors(stats)
    module_of = context.module_namer()
    records = [layers_json(pair, order, module_of) for pair in stats]
    return {"layers": {"ran": True, "reason": "a comparison failed or --layers was given", "pairs": records,
                       "judged_by": "noise floor" if with_oracle else "tolerance",
                       "notes": notes + _empty_pair_notes(records, with_oracle)},
            "localization": _localize(request, records, order, module_of)}


def judged_by_floors(stats: list) -> list:
    """Every oracle pair judged by the floor the bands measured, the perturbed band left out. PyTorch
    float32 itself is judged so too (its ratio is at most 1 by construction), never by the fixed atol,
    which would paint its own rounding on a deep model as a divergence."""
    bands = [p for p in stats if (p.reference, p.candidate) in (BAND, PERTURBED_BAND)]
    kept = [p for p in stats if (p.reference, p.candidate) != PERTURBED_BAND]
    apply_floors(kept, bands)
    return kept


def _runners(request: LayerRequest, model, torch_model, shapes, context, workdir: Path, with_oracle: bool) -> dict:
    specs = request.export.inputs
    runners = {"onnxruntime": onnx_intermediates_runner(request.artifacts.onnx, specs, workdir)}
    if torch_model is not None:
        mapping = _mapping(model, torch_model, shapes, context)
        runners["pytorch"] = TorchLayersRunner(torch_model, specs, mapping)
        if with_oracle:
            runners[Backend.ORACLE] = TorchLayersRunner(float64_copy(torch_model), specs, mapping, float64=True)
            runners[PERTURBED] = TorchLayersRunner(perturbed(float64_copy(torch_model), 1), specs, mapping, float64=True)
    layers = layer_model(request.source, request.artifacts)
    tf_runner = tf_layers_runner(request.artifacts.root, request.convert, specs, shapes, layers)
    if tf_runner is not None:
        runners["tf_layers"] = tf_runner
    return runners, ([] if tf_runner is not None else
                     [f"{layers.get('note') or 'no TF layer model from the converter'}: TF intermediates not compared"])


def _empty_pair_notes(records: list[dict], with_oracle: bool) -> list[str]:
    """One line for each pair that compared nothing, saying why."""
    why = ("none of its tensors has a PyTorch module output to measure a floor against" if with_oracle
           else "the two backends share no tensor name")
    return [f"{r['candidate']} vs {r['reference']}: no intermediate tensor compared: {why}" for r in records if not r["tensors"]]


def _localize(request: LayerRequest, records: list[dict], order: TensorOrder, module_of) -> list[dict]:
    """Localize each pair whose candidate failed at its outputs; say why the others are not."""
    lint = merged_lint(request.artifacts.read_if_any(LintRecord), request.convert)
    findings = [f.to_json() for f in lint.findings] if lint else []
    failed = {c.candidate for c in request.comparisons if c.verdict == "fail"}
    failed |= {"keras"} if failed & {"tf_saved_model", "tflite_fp32"} else set()  # the TF layer model stands in for them
    entries = []
    for record in records:
        if (record["reference"], record["candidate"]) == BAND:
            continue
        if request.oracle.available and record["candidate"] not in failed:
            entries.append(not_localized(record, f"{record['candidate']} passed at its outputs: not localized"))
            continue
        entries.append(localize(record, order, module_of, findings))
    return entries


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


def _oracle_pairs(runners: dict) -> list[tuple[str, str]]:
    pairs = [BAND, PERTURBED_BAND, (Backend.ORACLE, "onnxruntime")]
    return pairs + ([(Backend.ORACLE, "keras")] if "tf_layers" in runners else [])


def _pairs(reference: str, runners: dict) -> list[tuple[str, str]]:
    pairs = []
    if reference == "pytorch" and "pytorch" in runners:
        pairs.append(("pytorch", "onnxruntime"))
    if "tf_layers" in runners:
        pairs.append(("onnxruntime", "keras"))
        if "pytorch" in runners:
            pairs.append(("pytorch", "keras"))
    return pairs
