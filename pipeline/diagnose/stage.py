"""The diagnose command: map, check attributes, compare layer by layer, explain, fix.

`run` writes diagnose.json into the model's artifact folder and returns the DiagnoseRecord;
pipeline/orchestrate.py then writes diagnose.md and diagnose.html (pipeline/report/sections/diagnose.py
renders them) and exits 0 when the port is faithful, 1 when it is not.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from pipeline.artifacts.folder import ArtifactDir, write_json
from pipeline.audit.noise import NOISE_RATIO_BOUND
from pipeline.config import Source
from pipeline.diagnose.compare import (
    Reference, check_outputs, first_divergent, layer_rows, output_error, reference_run,
)
from pipeline.diagnose.dynamic import at_other_shapes, fixed_axes
from pipeline.diagnose.explain import explain
from pipeline.diagnose.fix import check_fix_path, write_fixed
from pipeline.diagnose.load import load_port
from pipeline.diagnose.kinds import WEIGHTED_KINDS
from pipeline.diagnose.mapping import Mapping, map_layers
from pipeline.artifacts.diagnose_record import FAITHFUL, NOT_FAITHFUL, DiagnoseRecord, Finding
from pipeline.diagnose.rules import PairContext, check_pair
from pipeline.diagnose.run import PortLayout, decide_layout, run_port, trace_torch
from pipeline.errors import UsageError
from pipeline.inputs import TensorSpec, feeds, generate, load_user_inputs, with_edge_cases
from pipeline.model.torch_model import build_model


@dataclass(frozen=True)
class DiagnoseRequest:
    source: Source
    keras: Path
    artifacts: ArtifactDir
    inputs: Path | None = None
    fix: Path | None = None
    json: bool = False


@dataclass(frozen=True)
class Subject:
    """Everything both sides need: the port, the PyTorch model, the samples and how they line up."""

    port: object
    model: object
    specs: list[TensorSpec]
    samples: dict[str, np.ndarray]
    layout: PortLayout
    mapping: Mapping
    reference: Reference
    calls: dict

    def evaluate(self, candidate):
        return output_error(run_port(candidate, self.samples, self.specs, self.layout), self.reference, self.layout)


def run(request: DiagnoseRequest) -> DiagnoseRecord:
    """Diagnose and write diagnose.json (its pages are the report's: pipeline/report/sections/diagnose.py)."""
    record = diagnose(request)
    with request.artifacts.staging() as stage:
        write_json(stage / "diagnose.json", record.to_json())
    return record


def diagnose(request: DiagnoseRequest) -> DiagnoseRecord:
    if request.source.kind != "config":
        raise UsageError(f"MODEL={request.source.path}: diagnose needs a YAML config (the PyTorch model the port came from)")
    if request.fix:
        check_fix_path(request.fix, request.keras)
    subject = prepare(request)
    checks = tuple(at_other_shapes(subject.port, subject.model, subject.specs, subject.layout, request.source.config))
    findings = check_attributes(subject) + fixed_axes(subject.port, subject.specs, subject.layout)
    outputs, rows = layer_rows(subject.port, subject.mapping, subject.samples, subject.specs, subject.layout, subject.reference)
    before = output_error(outputs, subject.reference, subject.layout)
    findings, together = explain(subject.port, findings, before, subject.evaluate)
    findings += _at_failing_shapes(subject, checks, findings)  # explained at the example shape, they would be 0%
    fixed = _fix(request, subject, findings) if request.fix else None
    errors = [f for f in findings if f.severity == "error"]
    verdict = FAITHFUL if not errors and before.within_floor and all(c.faithful for c in checks) else NOT_FAITHFUL
    return DiagnoseRecord(
        model=request.source.name, port=str(request.keras), layout=subject.layout.name,
        samples=len(next(iter(subject.samples.values()))), verdict=verdict, findings=tuple(_sorted(findings)),
        before=before, layers=tuple(rows), first_divergent=first_divergent(rows), mapping=subject.mapping.to_json(),
        all_corrections=together, fixed=fixed, noise_ratio_bound=NOISE_RATIO_BOUND, shapes=checks,
    )


def prepare(request: DiagnoseRequest) -> Subject:
    port = load_port(request.keras)
    config = request.source.config
    specs = [TensorSpec.from_config(spec) for spec in config.inputs]
    model = build_model(request.source)
    samples = load_user_inputs(request.inputs, specs) if request.inputs else generate(specs, config.samples, config.seed)
    samples = with_edge_cases(samples, specs)
    layout = decide_layout(port, specs, request.keras)
    _check_runs(port, samples, specs, layout, request.keras)
    calls = trace_torch(model, feeds(samples)[0], specs)
    mapping = map_layers(port, model, calls)
    _require_mapped(mapping, port, calls, request.keras)
    names = sorted({p.module for p in mapping.pairs})
    reference = reference_run(model, samples, specs, names)
    check_outputs(port, reference, request.keras)
    return Subject(port, model, specs, samples, layout, mapping, reference, {c.name: c for c in calls})


def _at_failing_shapes(subject: Subject, checks: tuple, found: list[Finding]) -> list[Finding]:
    """The attribute rules again at each shape where the port left the floor, with PyTorch traced there: a
    rule that depends on the input size (TF 'same' padding against PyTorch's symmetric pads) names the
    layer at that size. Findings the example shape already gave are not repeated."""
    seen = {(f.rule, f.keras_layer, f.attribute) for f in found}
    more: list[Finding] = []
    for check in checks:
        if check.before is None or check.before.within_floor:
            continue
        sized = [spec.at(check.shape) for spec in subject.specs]
        calls = trace_torch(subject.model, feeds(generate(sized, 1, 0))[0], sized)
        there = dataclasses.replace(subject, calls={c.name: c for c in calls})
        for finding in check_attributes(there):
            key = (finding.rule, finding.keras_layer, finding.attribute)
            if key not in seen:
                seen.add(key)
                more.append(dataclasses.replace(finding, message=f"at {check.where}: {finding.message}"))
    return more


def _check_runs(port, samples: dict[str, np.ndarray], specs: list[TensorSpec], layout: PortLayout, path: Path) -> None:
    """The port must run on the config's inputs (a Dense that expects another spatial size, say)."""
    first = {name: array[:1] for name, array in samples.items()}
    try:
        run_port(port, first, specs, layout)
    except Exception as exc:  # Keras and TF raise many types for "this input does not fit"
        raise UsageError(f"--keras {path}: the port fails on the config's inputs ({type(exc).__name__}: "
                         f"{_reason(exc)}); check its Input shape against the config's 'inputs'") from None


def _reason(exc: Exception) -> str:
    """Keras wraps a layer's error as 'Exception encountered when calling X.call().' and the reason
    on a later line: take the first line that says something."""
    lines = [line.strip() for line in _error_lines(exc) if line.strip()]
    useful = [line for line in lines if not line.startswith("Exception encountered")]
    return (useful or lines or [""])[0][:200]


def _error_lines(exc: Exception) -> list[str]:
    import re

    return re.sub(r"\x1b\[[0-9;]*m", "", str(exc)).splitlines()


def _require_mapped(mapping: Mapping, port, calls, path: Path) -> None:
    keras_left, torch_left = mapping.weighted_unmapped(port, calls)
    if not keras_left and not torch_left:
        return
    weighted = sum(1 for c in calls if c.kind in WEIGHTED_KINDS)
    missing = ([f"no PyTorch module has the weights of Keras layers {_few(keras_left)}"] if keras_left else []) + (
        [f"no Keras layer for PyTorch modules {_few(torch_left)}"] if torch_left else [])
    raise UsageError(
        f"--keras {path}: does not match the PyTorch model's architecture (mapped {weighted - len(torch_left)} of "
        f"{weighted} weighted modules): {'; '.join(missing)}; check that the port and the config describe the same network")


def _few(names: list[str]) -> str:
    return "[" + ", ".join(names[:5]) + (f", … {len(names) - 5} more" if len(names) > 5 else "") + "]"


def check_attributes(subject: Subject) -> list[Finding]:
    modules = dict(subject.model.named_modules())
    order = list(subject.calls.values())
    previous = {later.name: (earlier, modules[earlier.name]) for earlier, later in zip(order, order[1:])}
    mapped = frozenset(p.keras_layer for p in subject.mapping.pairs)
    mapped_torch = frozenset(p.module for p in subject.mapping.pairs)
    findings = []
    for pair in subject.mapping.pairs:
        ctx = PairContext(pair, subject.port.get_layer(pair.keras_layer), modules[pair.module], subject.calls[pair.module],
                          subject.port, subject.layout, mapped, mapped_torch, previous.get(pair.module))
        findings.extend(check_pair(ctx))
    return findings + _missing_layers(subject, modules)


# A PyTorch activation, pooling or upsampling module with no Keras layer: the port skips a computation.
# (Unmapped Keras layers are only listed: PyTorch often computes them in forward() without a module.)
MISSING_KINDS = ("act", "pool", "upsample")


def _missing_layers(subject: Subject, modules: dict) -> list[Finding]:
    kinds = {c.name: c.kind for c in subject.calls.values()}
    return [Finding(
        rule="missing_layer", severity="error", keras_layer=None, module=name, attribute="layer",
        expected=type(modules[name]).__name__, actual=None,
        message=f"PyTorch's {name} ({type(modules[name]).__name__}) has no counterpart in the port; add the layer "
                "where the PyTorch model applies it",
    ) for name in subject.mapping.unmapped_torch if kinds.get(name) in MISSING_KINDS]


def _fix(request: DiagnoseRequest, subject: Subject, findings: list[Finding]) -> dict:
    try:
        fixed, corrections = write_fixed(subject.port, findings, request.fix)
    except UsageError:
        raise
    except Exception as exc:  # Keras refusing the rebuilt config: the diagnosis still stands
        return {"path": str(request.fix), "verdict": "not written",
                "error": f"{type(exc).__name__}: {_reason(exc)}"}
    outputs, rows = layer_rows(fixed, subject.mapping, subject.samples, subject.specs, subject.layout, subject.reference)
    after = output_error(outputs, subject.reference, subject.layout)
    shapes = at_other_shapes(fixed, subject.model, subject.specs, subject.layout, request.source.config)
    faithful = after.within_floor and all(c.faithful for c in shapes)
    return {"path": str(request.fix), "corrections": corrections, "after": after.to_json(),
            "verdict": FAITHFUL if faithful else NOT_FAITHFUL, "layers": [r.to_json() for r in rows],
            "shapes": [c.to_json() for c in shapes]}


def _sorted(findings: list[Finding]) -> list[Finding]:
    rank = {"error": 0, "warning": 1, "info": 2}
    return sorted(findings, key=lambda f: (rank.get(f.severity, 3), -(f.explained or 0.0)))


def request_for(args) -> DiagnoseRequest:
    """The request `python -m pipeline diagnose MODEL --keras PORT [...]` makes, from parsed arguments
    (pipeline/orchestrate.py runs it, then writes the files through the report's diagnose section)."""
    from pipeline.config import resolve_source

    source = resolve_source(args.model)
    artifacts = ArtifactDir.for_model(source.name, args.out)
    artifacts.ensure_writable()
    return DiagnoseRequest(source, Path(args.keras), artifacts, inputs=Path(args.inputs) if args.inputs else None,
                           fix=Path(args.fix) if args.fix else None, json=args.json)
