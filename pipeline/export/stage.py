"""Stage 1, export: PyTorch model -> model.onnx, plus the shared inputs.

Exporters are tried as a list of strategies (dynamo first, then TorchScript).
Each returns an attempt record instead of raising, and export.json records
which one produced model.onnx and why the earlier ones failed.
On the ONNX route this stage imports the given file instead.
"""
from __future__ import annotations

import dataclasses
import os
import re
import time
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Callable

import onnx

from pipeline import inputs as shared_inputs
from pipeline import process, profile, shapes
from pipeline.artifacts.folder import ArtifactDir, write_json
from pipeline.artifacts.records import Attempt, ExportRecord
from pipeline.config import Source
from pipeline.console import capture_output
from pipeline.errors import ConfigError, ExportError, first_line
from pipeline.export.dynamic import DynamicRequest, DynamicShapeError, capture, static_axes
from pipeline.export.torchlib import quick_torchlib_registry
from pipeline.inputs import TensorSpec
from pipeline.model.onnx_import import default_opset, import_onnx, input_specs, output_names
from pipeline.model.torch_model import build_model

if TYPE_CHECKING:  # torch is imported where it is used: a full run starts the conversion child first
    import torch

TORCHSCRIPT_DEFAULT_OPSET = 17
FAILED_LOG = "export.failed.log"


@dataclass(frozen=True)
class ExportRequest:
    model: torch.nn.Module
    args: tuple
    input_names: list[str]
    output_names: list[str]
    opset: int | None
    path: Path
    dynamic: DynamicRequest | None = None  # the dimensions that stay dynamic, with the traced example


def _export_dynamo(request: ExportRequest) -> None:
    import torch

    with profile.step("export: import the dynamo exporter (torch.export, onnxscript)"):
        import onnxscript  # noqa: F401
        import torch.export  # noqa: F401
        process.settle()
    model, args = request.model, request.args
    if request.dynamic is not None:
        with profile.step("export: torch.export with dynamic dimensions"):
            model, args = capture(request.dynamic), request.dynamic.args
    with profile.step("export: torch.onnx.export (torchlib registry, capture, decompose, translate, optimize)"), \
            quick_torchlib_registry(), process.fewer_collections():
        program = torch.onnx.export(
            model, args, dynamo=True, input_names=request.input_names,
            output_names=request.output_names, opset_version=request.opset,
        )
    if request.dynamic is not None:  # torch.export's symbols (s77) become the config's names (batch)
        program.rename_axes(_axis_names(program, request.dynamic))
    with profile.step("export: save model.onnx"):
        program.save(str(request.path))


def _axis_names(program, dynamic: DynamicRequest) -> dict:
    mapping = {}
    for value, axes in zip(program.model.graph.inputs, dynamic.dynamic):
        for axis, name in axes.items():
            if not isinstance(value.shape[axis], int):
                mapping[value.shape[axis]] = name
    return mapping


def _export_torchscript(request: ExportRequest) -> None:
    import torch

    dynamic = request.dynamic
    axes = {name: {a: n for a, n in ax.items()} for name, ax in zip(request.input_names, dynamic.dynamic) if ax} if dynamic else None
    torch.onnx.export(
        request.model, dynamic.args if dynamic else request.args, str(request.path), dynamo=False,
        input_names=request.input_names, output_names=request.output_names,
        opset_version=request.opset or TORCHSCRIPT_DEFAULT_OPSET, dynamic_axes=axes,
    )


STRATEGIES: dict[str, Callable[[ExportRequest], None]] = {"dynamo": _export_dynamo, "torchscript": _export_torchscript}


@dataclass(frozen=True)
class ExportChoice:
    """Which exporter and opset to use instead of the config's (a conversion fallback)."""

    exporter: str
    opset: int | None
    why: str


def run(source: Source, artifacts: ArtifactDir, onnx_file: Path | None = None, choice: ExportChoice | None = None) -> ExportRecord:
    """Write model.onnx, inputs.npz and export.json; return the export record.

    With `onnx_file` (audit --onnx), that file stands in for the export: it is audited
    against the config's PyTorch model on the config's inputs."""
    with artifacts.staging() as stage:
        if source.kind == "onnx":
            record = _import(source, stage)
        elif onnx_file is not None:
            record = _import_for_config(source, onnx_file, stage)
        else:
            record = _export_keeping_log(source, stage, choice, artifacts)
        write_json(stage / "export.json", record)
    return record


def _export_keeping_log(source: Source, stage: Path, choice, artifacts: ArtifactDir) -> ExportRecord:
    try:
        return _export(source, stage, choice)
    except ExportError as exc:
        # The staging folder goes away; the exporters' log is kept beside the intact artifacts.
        kept = artifacts.root / FAILED_LOG
        if (stage / "export.log").exists():
            os.replace(stage / "export.log", kept)
        raise ExportError(str(exc).replace(f"full log: {FAILED_LOG}", f"full log: {artifacts.shown(kept)}")) from None


def _import_for_config(source: Source, onnx_file: Path, stage: Path) -> ExportRecord:
    result = import_onnx(onnx_file)
    onnx.save(result.model, str(stage / "model.onnx"))
    config = source.config
    specs = [TensorSpec.from_config(spec) for spec in config.inputs]
    graph_inputs = [s.name for s in input_specs(result.model, [])]
    if graph_inputs != [s.name for s in specs]:
        raise ConfigError(f"{onnx_file}: its inputs {graph_inputs} are not the config's {[s.name for s in specs]}; "
                          "audit an ONNX file exported from this model")
    samples = shared_inputs.with_edge_cases(shared_inputs.generate(specs, config.samples, config.seed), specs)
    shared_inputs.save_npz(stage / "inputs.npz", samples)
    return ExportRecord(
        route="pytorch", source=str(onnx_file), exporter=f"none (given file {onnx_file.name})", attempts=[],
        opset=result.opset, inputs=specs, outputs=output_names(result.model), reference="pytorch", seed=config.seed,
        notes=result.notes + [f"audited ONNX file given with --onnx: {onnx_file}"],
    )


def _import(source: Source, stage: Path) -> ExportRecord:
    result = import_onnx(source.path)
    onnx.save(result.model, str(stage / "model.onnx"))
    notes = list(result.notes)
    specs = input_specs(result.model, notes)
    samples = shared_inputs.with_edge_cases(shared_inputs.generate(specs, samples=4, seed=0), specs)
    shared_inputs.save_npz(stage / "inputs.npz", samples)
    specs, extra = _free_axis_zero(stage / "model.onnx", specs, notes)
    shapes.write_input_sets(stage, specs, extra, samples=4, seed=0)
    return ExportRecord(
        route="onnx", source=str(source.path), exporter="none (ONNX file given)", attempts=[], opset=result.opset,
        inputs=specs, outputs=output_names(result.model), reference="onnxruntime", seed=0, notes=notes, shapes=extra,
    )


def _free_axis_zero(onnx_path: Path, specs: list[TensorSpec], notes: list[str]) -> tuple[list[TensorSpec], list[dict]]:
    """The ONNX route's extra audited shapes (its free axis 0 at 3 and at 2), once ONNX Runtime runs the file at
    each; where it cannot (a Reshape to a literal batch of 1, say), every axis stays at the example size and a note
    says why: a free dimension the file declares is no promise that it can vary."""
    extra = shapes.audit_shapes(specs, {}, None)
    if not extra:
        return specs, []
    import onnxruntime as ort

    session = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    for sizes in extra:
        sized = [spec.at(sizes) for spec in specs]
        feed = shared_inputs.feeds(shared_inputs.generate(sized, samples=1, seed=0))[0]
        try:
            session.run(None, feed)
        except Exception as exc:  # noqa: BLE001 - ONNX Runtime raises its own C++ types; the note names it
            names = ", ".join(f"input '{s.name}' axis 0 ('{s.dynamic[0]}')" for s in specs if s.dynamic)
            notes.append(f"{names} is free in the file, but ONNX Runtime cannot run it at {shapes.describe(sizes, sizes)} "
                         f"({type(exc).__name__}: {first_line(exc, 200)}): audited at the example size only")
            return [dataclasses.replace(s, dynamic={}) for s in specs], []
    names = ", ".join(f"'{s.dynamic[0]}' (input '{s.name}' axis 0)" for s in specs if s.dynamic)
    notes.append(f"kept dynamic: {names}; audited at 1 and at " + "; ".join(shapes.describe(x, x) for x in extra))
    return specs, extra


def _export(source: Source, stage: Path, choice: ExportChoice | None = None) -> ExportRecord:
    with profile.step("export: import torch"):  # not at the CLI's start: the conversion child starts first
        import torch
    config = source.config
    specs = [TensorSpec.from_config(spec) for spec in config.inputs]
    samples = shared_inputs.with_edge_cases(shared_inputs.generate(specs, config.samples, config.seed), specs)
    with profile.step("export: build the PyTorch model"):
        model = build_model(source)
    first = shared_inputs.feeds(samples)[0]
    args = tuple(torch.from_numpy(first[spec.name]) for spec in specs)
    count = _count_outputs(model, args, source)
    names = config.outputs or _default_output_names(count)
    if len(names) != count:
        raise ConfigError(f"{source.path}: key 'outputs' names {len(names)} outputs but the model returns {count}; list one name per output")
    opset = choice.opset if choice else config.opset
    dims = {name: c.model_dump() for name, c in config.dims.items()}
    request = ExportRequest(model, args, [s.name for s in specs], names, opset, stage / "model.onnx",
                            _dynamic_request(model, args, specs, dims, config.seed))
    order = [choice.exporter] if choice else _strategy_order(config.exporter)
    attempts = _try_strategies(request, order, stage / "export.log")
    shared_inputs.save_npz(stage / "inputs.npz", samples)
    extra = shapes.audit_shapes(specs, dims, config.audit_shapes)
    shapes.write_input_sets(stage, specs, extra, config.samples, config.seed)  # inputs.npz keeps the example shape
    return ExportRecord(
        route="pytorch", source=str(source.path), exporter=attempts[-1].strategy, attempts=attempts,
        opset=default_opset(onnx.load(str(request.path), load_external_data=False)), inputs=specs, outputs=names,
        reference="pytorch", seed=config.seed,
        notes=[f"re-exported with {choice.exporter} (opset {opset or 'default'}): {choice.why}"] if choice else [],
        dims=dims if shapes.is_dynamic(specs) else {}, shapes=extra,
    )


def _dynamic_request(model, args: tuple, specs: list[TensorSpec], dims: dict, seed: int) -> DynamicRequest | None:
    import torch

    if not shapes.is_dynamic(specs):
        return None
    traced = shapes.export_sizes(specs, dims)
    sized = [spec.at(traced) for spec in specs]
    first = shared_inputs.feeds(shared_inputs.generate(sized, 1, seed))[0]
    traced_args = tuple(torch.from_numpy(first[spec.name]) for spec in sized) if traced else args
    return DynamicRequest(model, traced_args, args, [s.name for s in specs], [dict(s.dynamic) for s in specs], dims)


def _count_outputs(model: torch.nn.Module, args: tuple, source: Source) -> int:
    import torch

    try:
        with torch.no_grad():
            outputs = model(*args)
    except Exception as exc:  # the user's forward(): report it against the config's inputs
        shapes = ", ".join(f"{s.name}{list(s.shape)}" for s in source.config.inputs)
        raise ConfigError(
            f"{source.path}: the model rejects the configured inputs ({shapes}): "
            f"{type(exc).__name__}: {str(exc).splitlines()[0]}; fix 'inputs' in the config"
        ) from None
    return len(outputs) if isinstance(outputs, (tuple, list)) else 1


def _default_output_names(count: int) -> list[str]:
    return ["output"] if count == 1 else [f"output_{i}" for i in range(count)]


def _strategy_order(choice: str) -> list[str]:
    return ["dynamo", "torchscript"] if choice == "auto" else [choice]


def _try_strategies(request: ExportRequest, order: list[str], log_path: Path) -> list[Attempt]:
    attempts: list[Attempt] = []
    for name in order:
        attempt = _attempt(name, request, log_path)
        attempts.append(attempt)
        if attempt.ok:
            return attempts
    tried = "; ".join(f"{a.strategy}: {a.error}" for a in attempts)
    raise ExportError(f"every exporter failed ({tried}); full log: {FAILED_LOG}")


def _attempt(name: str, request: ExportRequest, log_path: Path) -> Attempt:
    start = time.perf_counter()
    try:
        with capture_output(log_path):
            STRATEGIES[name](request)
            onnx.checker.check_model(str(request.path))
        _check_still_dynamic(request)
    except DynamicShapeError:
        raise  # the model, not the exporter: no other exporter can keep the axis dynamic either
    except Exception as exc:  # an exporter may fail in many ways; the next strategy gets its turn
        with log_path.open("a") as log:
            log.write(f"\n--- {name} exporter failed ---\n{traceback.format_exc()}\n")
        ops = unsupported_ops(traceback.format_exc())
        op = f" [unsupported op: {', '.join(ops)}]" if ops else ""
        return Attempt(name, False, time.perf_counter() - start, f"{type(exc).__name__}: {first_line(exc)}{op}")
    return Attempt(name, True, time.perf_counter() - start)


def _check_still_dynamic(request: ExportRequest) -> None:
    if request.dynamic is None:
        return
    fixed = static_axes(request.path, request.input_names, request.dynamic.dynamic)
    if fixed:  # never a silently static model: this exporter failed, the next gets its turn
        raise ExportError(f"model.onnx came out static where the config asks for dynamic: {'; '.join(fixed)}")


def unsupported_ops(text: str) -> list[str]:
    """The aten operators an exporter's error text names, in order, once each."""
    found = re.findall(r"aten(?:::|\.)([A-Za-z0-9_]+)(?:\.[a-z_]+)?", text)
    return list(dict.fromkeys(f"aten::{op}" for op in found))[:3]


