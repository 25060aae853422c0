"""Stage 4, audit: every backend on the same inputs, compared with the reference.

The reference is PyTorch, or ONNX Runtime on the ONNX route. Outputs the validate
stage already computed on the same inputs are reused, not rerun. When a comparison
fails (or with --layers), intermediate tensors are compared layer by layer and the
first divergence is localized. Writes outputs/<backend>.npz and audit.json.
"""
from __future__ import annotations

import dataclasses
import time
from pathlib import Path

import numpy as np
from typing import Callable

from rich.progress import Progress

from pipeline import inputs as shared_inputs, profile
from pipeline import shapes
from pipeline.artifacts.folder import ArtifactDir, sha256, write_json
from pipeline.artifacts.records import AuditRecord, ConvertRecord, ExportRecord, ValidateRecord
from pipeline.runners import remote
from pipeline.model.fp16_storage import stored_file
from pipeline.runners.factory import available_tf_backends, make_runner
from pipeline.compare import RunResults, Tolerance, compare, not_run, overall_verdict, run_sets, tolerance_for
from pipeline.config import Source
from pipeline.console import capture_output, console, stage_status
from pipeline.errors import RunnerError, first_line
from pipeline.audit.judge import Evidence, Oracle, PrecisionBudget, judge, with_storage_reference_checked
from pipeline.audit import oracle_ahead, oracle_check
from pipeline.audit.layer_request import LayerRequest
from pipeline.audit.noise import ILL_CONDITIONED, NOISE_ATOL, PERTURBATION_SEEDS, rounding_spread, sample_floors
from pipeline.names import PRECISION, Backend

Waiting = Callable[[], tuple[list[RunResults], list[dict[str, str]]]]  # waits for the TF worker's backends: per input set, results and broken


def run(source: Source, artifacts: ArtifactDir, samples: int | None = None, inputs_file: Path | None = None,
        layers: bool = False) -> AuditRecord:
    start = time.perf_counter()
    export, convert = artifacts.read(ExportRecord), artifacts.read(ConvertRecord)
    _prepare_inputs(artifacts, export, samples, inputs_file)
    sets = _input_sets(artifacts, export)
    feeds = sets[0].feeds
    reference = export.reference
    backends = [reference] + (["onnxruntime"] if reference == "pytorch" else []) + available_tf_backends(convert)
    ran = _every_set(source, artifacts, export, convert, backends, sets)
    results, oracle, fp16_oracle = ran.results[0], ran.oracles[0], ran.fp16_oracles[0]
    labels = shared_inputs.sample_labels(len(feeds), edge_cases=True)
    evidence = Evidence(oracle, fp16_oracle, _overrides(source), _budgets(source), tuple(labels),
                        results.get(Backend.TFLITE_FP32))
    comparisons = _comparisons(source, reference, [b for b in backends if b != reference], results, ran.broken[0], evidence)
    comparisons, at_shapes, failing = _at_every_shape(source, export, backends, sets, ran, comparisons)
    verdict = overall_verdict([c.verdict for c in comparisons])
    signal = _signal(source, artifacts, export, feeds, comparisons)
    # Localized where it failed: at the example shape, or else at the first shape where a backend failed.
    at = failing if failing and not any(c.verdict == "fail" and not c.shape for c in comparisons) else None
    request = LayerRequest(source, artifacts, export, convert, at.feeds if at else feeds, _overrides(source),
                           at.oracle if at else oracle, at.comparisons if at else comparisons)
    layer_pass = _at_shape(_layer_by_layer(request, run_it=layers or verdict == "fail"), at)
    tflite = _tflite_layers(request, _tflite_to_inspect(comparisons, layers))
    record = AuditRecord(
        reference=reference, backends=backends, samples=len(feeds), reused_outputs=ran.reused,
        sample_labels=labels, inputs_sha256=sha256(artifacts.inputs),
        comparisons=comparisons,
        histograms=[{"reference": c.reference, "candidate": c.candidate, "output": c.output,
                     **({"shape": c.shape} if c.shape is not None else {}), **c.histogram}
                    for c in comparisons if c.histogram],
        verdict=verdict, verdict_reasons=_reasons(comparisons, signal), signal=signal,
        layers=layer_pass["layers"], localization=layer_pass["localization"],
        seconds=round(time.perf_counter() - start, 3), oracle=oracle.to_json(),
        fp16_oracle=fp16_oracle.to_json() if fp16_oracle else None,
        warnings=_ill_conditioned(ran.oracles, sets, labels)
        + [f"{c.candidate} '{c.output}': {c.warning}" for c in comparisons if c.warning],
        tflite_layers=tflite,
    )
    fresh = {b: arrays for b, arrays in results.items() if b not in ran.reused}
    oracles = [o for o in (oracle, fp16_oracle) if o is not None and o.available and o.backend]
    _write(artifacts, record, {**fresh, **{o.backend: o.outputs for o in oracles}, **at_shapes})
    return record


def _ill_conditioned(oracles: list[Oracle], sets: list["InputSet"], labels: list[str]) -> list[str]:
    """One line per output and shape with samples whose output is set by rounding: which, by how much, and
    that they judge nothing."""
    lines = []
    for oracle, at in zip(oracles, sets):
        for name, samples in oracle.ill_conditioned().items():
            spread = float(np.max(oracle.rounding_spread[name][samples]))
            which = ", ".join(f"'{labels[i]}'" if i < len(labels) else str(i) for i in samples)
            where = f" at {at.where}" if at.sizes else ""
            rest = ("no sample is left to judge" if len(samples) == len(oracle.rounding_spread[name])
                    else "every other sample is judged")
            lines.append(f"'{name}'{where}: samples {which} are not judged: one float32 rounding of the weights and "
                         f"inputs moves the float64 output there by up to {spread:.2g} of its scale (bound "
                         f"{ILL_CONDITIONED:g}), so its value is set by rounding (a near-constant input through a "
                         f"normalization, say); {rest}")
    return lines


@dataclasses.dataclass(frozen=True)
class InputSet:
    """The inputs of one audited shape: the example's (sizes {}) or an extra shape's of a dynamic model."""

    sizes: dict
    where: str
    feeds: list


def start_oracle(source: Source, artifacts: ArtifactDir) -> None:
    """The float64 oracle's runs on the audit's inputs, started now in a thread (pipeline/audit/oracle_ahead.py):
    a full run's parent calls this while its conversion child converts."""
    export = artifacts.read(ExportRecord)
    oracle_ahead.start(source, artifacts, export, [s.feeds for s in _input_sets(artifacts, export)])


def _input_sets(artifacts: ArtifactDir, export: ExportRecord) -> list[InputSet]:
    """inputs.npz at the example shape, then each extra shape export.json lists (its own inputs_<shape>.npz)."""
    def load(path: Path) -> list:
        return shared_inputs.feeds(shared_inputs.load_npz(artifacts.require(path, "export")))

    example = shapes.example_sizes(export.inputs)
    return [InputSet({}, "the example shape", load(artifacts.inputs))] + [
        InputSet(dict(sizes), shapes.describe(sizes, example), load(artifacts.root / shapes.inputs_name(sizes)))
        for sizes in export.shapes]


@dataclasses.dataclass(frozen=True)
class SetRuns:
    """Every backend and oracle on every input set (index 0 the example): each backend loaded once for all
    of them, so an extra shape costs its inferences, not another load of every model."""

    results: list  # per set: backend -> output -> stacked array
    broken: list  # per set: backend -> why it could not run there
    oracles: list  # per set: Oracle
    fp16_oracles: list  # per set: Oracle, or None without an fp16 file
    reused: list  # backends whose example outputs came from validate


def _every_set(source: Source, artifacts: ArtifactDir, export: ExportRecord, convert: ConvertRecord,
               backends: list[str], sets: list[InputSet]) -> SetRuns:
    """The TF worker's backends (SavedModel, Keras) run there while this process runs the rest and the
    oracles; the worker's answer is always taken before anything goes on, so that no later call reads it
    instead of its own."""
    reused_results, reused = _reuse_validated(artifacts, backends)
    results, broken, in_worker = _run(backends, source, artifacts, export, convert, sets, reused_results)
    try:
        _raise_if_reference_broken(export.reference, broken, sets)
        oracles = _oracles(source, artifacts, export, sets, results)
        fp16 = (_fp16_oracles(artifacts, export, convert, sets, oracles) if Backend.TFLITE_FP16 in backends
                else [None] * len(sets))
    finally:
        worker_results, worker_broken = in_worker()
    for index in range(len(sets)):
        results[index].update(worker_results[index])
        broken[index].update(worker_broken[index])
    return SetRuns(results, broken, oracles, fp16, reused)


def _raise_if_reference_broken(reference: str, broken: list[dict[str, str]], sets: list[InputSet]) -> None:
    """Nothing is judged without the reference: its error, with the shape when it was an extra one."""
    for where, failed in zip(sets, broken):
        if reference in failed:
            raise RunnerError(failed[reference] if not where.sizes else
                              f"{reference} could not run at {where.where}: {failed[reference]}")


def _comparisons(source: Source, reference: str, candidates: list[str], results: RunResults, broken: dict[str, str],
                 evidence: Evidence) -> list:
    """Each candidate that ran, compared with the reference and judged by the rule that applies to it;
    each one that could not run, a failure."""
    overrides = evidence.overrides
    ran = [b for b in candidates if b not in broken]
    judged = [judge(c, results[reference][c.output], results[c.candidate].get(c.output), evidence)
              for c in compare(results, reference, ran, overrides, _classification(source))]
    return with_storage_reference_checked(judged) + [not_run(reference, backend, output, tolerance_for(backend, overrides), reason)
                     for backend, reason in broken.items() for output in results[reference]]


def _at_every_shape(source: Source, export: ExportRecord, backends: list[str], sets: list[InputSet], ran: SetRuns,
                    at_example: list) -> tuple[list, RunResults, "ShapeAudit | None"]:
    """A dynamic model: every backend's outputs at each extra shape of export.json, on that shape's own input
    set, judged by the same rules against the oracle at that shape. Each comparison carries its shape; a
    failure's reason names it. Also returns each backend's outputs there (outputs/<backend>@<shape>.npz)."""
    if not export.shapes:
        return at_example, {}, None
    comparisons = [dataclasses.replace(c, shape={}) for c in at_example]
    outputs: RunResults = {}
    failing = None
    for index in range(1, len(sets)):
        with profile.step(f"audit: at {sets[index].where}"):  # judging it (its runs shared the example's loads)
            at, results = _judged_at(source, export, backends, sets[index], ran, index)
        outputs.update(results)
        comparisons += at.comparisons
        if failing is None and any(c.verdict == "fail" for c in at.comparisons):
            failing = at
    return comparisons, outputs, failing


def _judged_at(source: Source, export: ExportRecord, backends: list[str], at: InputSet, ran: SetRuns,
               index: int) -> tuple["ShapeAudit", RunResults]:
    """One extra shape judged; and the outputs to write there, keyed <backend>@<shape>."""
    results, oracle, fp16 = ran.results[index], ran.oracles[index], ran.fp16_oracles[index]
    outputs = {shapes.outputs_key(b, at.sizes): arrays for b, arrays in results.items()}
    outputs.update({shapes.outputs_key(o.backend, at.sizes): o.outputs for o in (oracle, fp16)
                    if o and o.available and o.backend})
    labels = shared_inputs.sample_labels(len(at.feeds), edge_cases=True)
    evidence = Evidence(oracle, fp16, _overrides(source), _budgets(source), tuple(labels), results.get(Backend.TFLITE_FP32))
    candidates = [b for b in backends if b != export.reference]
    here = [dataclasses.replace(c, shape=dict(at.sizes), reason=f"at {at.where}: {c.reason}" if c.verdict != "pass" and c.reason else c.reason)
            for c in _comparisons(source, export.reference, candidates, results, ran.broken[index], evidence)]
    return ShapeAudit(dict(at.sizes), at.where, at.feeds, oracle, here), outputs


@dataclasses.dataclass(frozen=True)
class ShapeAudit:
    """One extra shape's audit; the first where a backend failed is where the layer-by-layer pass localizes it."""

    sizes: dict
    where: str
    feeds: list
    oracle: Oracle
    comparisons: list


def _at_shape(layer_pass: dict, at: ShapeAudit | None) -> dict:
    """The layer-by-layer result says which shape it ran at when that is not the example."""
    if at is None:
        return layer_pass
    layers = {**layer_pass["layers"], "shape": at.sizes}
    localization = [{**entry, "explanation": f"at {at.where}: {entry['explanation']}"} if entry.get("explanation") else entry
                    for entry in layer_pass["localization"] or []] or layer_pass["localization"]
    return {"layers": layers, "localization": localization}


def _write(artifacts: ArtifactDir, record: AuditRecord, outputs: RunResults) -> None:
    with artifacts.staging() as stage:
        (stage / "outputs").mkdir()
        for backend, arrays in outputs.items():
            shared_inputs.save_npz(stage / "outputs" / f"{backend}.npz", arrays)
        write_json(stage / "audit.json", record)


def _reasons(comparisons: list, signal: dict | None) -> list[str]:
    """Each distinct reason a comparison failed or is inconclusive, once."""
    reasons: list[str] = []
    for c in comparisons:
        if c.verdict != "pass":
            text = f"{c.verdict}: {c.candidate} '{c.output}': {c.reason}"
            if c.verdict == "inconclusive":
                text = f"inconclusive: '{c.output}': {c.reason}"
            if text not in reasons:
                reasons.append(text)
    return reasons + ([signal["message"]] if signal else [])


def _signal(source: Source, artifacts: ArtifactDir, export: ExportRecord, feeds: list, comparisons: list) -> dict | None:
    """For an output inconclusive for lack of signal: the node where it vanished or blew up."""
    no_signal = ("magnitude", "NaN")
    weak = next((c for c in comparisons if c.verdict == "inconclusive" and any(k in (c.reason or "") for k in no_signal)), None)
    if weak is None:
        return None
    import onnx

    from pipeline.audit.signal_trace import trace
    from pipeline.model.context import ModelContext
    from pipeline.model.torch_model import reference_model

    specs = export.inputs
    module_of = ModelContext(onnx.load(str(artifacts.onnx)), reference_model(source, export)).module_namer()
    with capture_output(artifacts.root / "audit.log"):
        return trace(artifacts.onnx, specs, feeds[0], weak.output, module_of)


def _prepare_inputs(artifacts: ArtifactDir, export: ExportRecord, samples: int | None, inputs_file: Path | None) -> None:
    """Replace inputs.npz with a user's data or another sample count (edge cases always appended)."""
    if samples is None and inputs_file is None:
        return
    specs = export.inputs
    if inputs_file is not None:
        arrays = shared_inputs.load_user_inputs(inputs_file, specs)
    else:
        arrays = shared_inputs.generate(specs, samples, export.seed)
    with artifacts.staging() as stage:
        shared_inputs.save_npz(stage / "inputs.npz", shared_inputs.with_edge_cases(arrays, specs))
        if samples is not None:  # the extra shapes of a dynamic model get the same count (--inputs: the example's only)
            shapes.write_input_sets(stage, specs, export.shapes, samples, export.seed)


def _reuse_validated(artifacts: ArtifactDir, backends: list[str]) -> tuple[RunResults, list[str]]:
    validate = artifacts.read_if_any(ValidateRecord)
    if not validate or validate.inputs_sha256 != sha256(artifacts.inputs):
        return {}, []
    results = {}
    for backend in validate.backends:
        path = artifacts.output_file(backend)
        if backend in backends and path.exists():
            results[backend] = shared_inputs.load_npz(path)
    return results, sorted(results)


def _run(backends: list[str], source: Source, artifacts: ArtifactDir, export: ExportRecord, convert: ConvertRecord,
         sets: list[InputSet], reused: RunResults) -> tuple[list[RunResults], list[dict[str, str]], Waiting]:
    """Run each backend on every input set, loaded once; a candidate that cannot run (say, TFLite with Select
    TF ops and no Flex delegate) is recorded and compared as a failure, while the others are still audited.
    A backend whose example outputs validate already computed (`reused`) runs the extra shapes only. The TF
    worker's backends (SavedModel, Keras) run there, one after the other, while this process runs the rest
    and the oracle: the returned function waits for them."""
    runners = [make_runner(b, source, artifacts, export, convert) for b in backends]
    in_worker = [r for r in runners if remote.local_runner(r) is not None]
    feed_sets = [s.feeds for s in sets]
    waiting = _start_in_worker(in_worker, feed_sets, export.reference)
    here = [r for r in runners if r not in in_worker]
    again, fresh = [r for r in here if r.name in reused], [r for r in here if r.name not in reused]
    # TF and LiteRT print C++ log lines while loading; they go to audit.log, not the terminal.
    try:
        with capture_output(artifacts.root / "audit.log"), Progress(console=console, transient=True) as progress:
            samples = sum(len(f) for f in feed_sets)
            task = progress.add_task("running backends", total=len(fresh) * samples + len(again) * (samples - len(feed_sets[0])))
            advance = lambda name, i: progress.update(task, advance=1, description=f"running {name}")  # noqa: E731
            results, broken = run_sets(fresh, feed_sets, advance, reference=export.reference)
            extra_results, extra_broken = run_sets(again, feed_sets[1:], advance, reference=export.reference)
    except BaseException:
        waiting()  # taken before the error goes on (see _every_set)
        raise
    results[0].update(reused)
    for index in range(1, len(sets)):
        results[index].update(extra_results[index - 1])
        broken[index].update(extra_broken[index - 1])
    return results, broken, waiting


def _start_in_worker(runners: list, feed_sets: list[list], reference: str) -> Waiting:
    nothing = lambda: ([{} for _ in feed_sets], [{} for _ in feed_sets])  # noqa: E731
    if not runners:
        return nothing
    names = [r.name for r in runners]
    everywhere = lambda why: ([{} for _ in feed_sets], [{name: why for name in names} for _ in feed_sets])  # noqa: E731
    try:
        value = remote.start(run_sets, [remote.local_runner(r) for r in runners], feed_sets, None, True, reference)
    except RunnerError as exc:  # the worker had died: none of its backends runs
        why = str(exc)
        return lambda: everywhere(why)

    def wait() -> tuple[list[RunResults], list[dict[str, str]]]:
        try:
            with stage_status(f"waiting for the TensorFlow worker ({', '.join(names)})"):
                return value()
        except RunnerError as exc:  # the worker died while it ran them: at which shape, it cannot say
            shapes_note = f" (it ran them at all {len(feed_sets)} shapes in one job)" if len(feed_sets) > 1 else ""
            return everywhere(f"{exc}{shapes_note}")

    return wait


def _layer_by_layer(request: LayerRequest, run_it: bool) -> dict:
    if not run_it:
        return {"layers": {"ran": False, "reason": "every comparison passed; run with --layers to compare intermediates",
                           "pairs": []}, "localization": None}
    from pipeline.audit.layer_by_layer import run_layers

    try:
        with stage_status("comparing intermediate tensors layer by layer"), capture_output(request.artifacts.root / "audit.log"):
            return run_layers(request)
    except RunnerError as exc:  # an explanation step never takes the audit down: it says why it could not run
        return {"layers": {"ran": False, "reason": f"could not run ({exc})", "pairs": []}, "localization": None}




def _tflite_to_inspect(comparisons: list, every: bool) -> list[str]:
    """The TFLite files read layer by layer: every one with --layers, else those that failed or warned."""
    tflite = [c for c in comparisons if c.candidate.startswith("tflite_") and c.candidate in PRECISION]
    chosen = [c.candidate for c in tflite if every or c.verdict == "fail" or c.warning]
    return list(dict.fromkeys(chosen))


def _tflite_layers(request: LayerRequest, backends: list[str]) -> list[dict] | None:
    if not backends:
        return None
    import onnx

    from pipeline.audit.tflite_layers import run_tflite_layers, with_where
    from pipeline.model.context import ModelContext
    from pipeline.model.graph import TensorOrder, static_shapes
    from pipeline.model.torch_model import reference_model

    model = onnx.load(str(request.artifacts.onnx))
    module_of = ModelContext(model, reference_model(request.source, request.export)).module_namer()
    try:
        with stage_status(f"reading {', '.join(backends)} layer by layer"), \
                capture_output(request.artifacts.root / "audit.log"), profile.step("audit: TFLite files layer by layer"):
            return with_where(run_tflite_layers(request, backends, module_of, TensorOrder.of(model), static_shapes(model)))
    except RunnerError as exc:  # an explanation step never takes the audit down: it says why it could not run
        return [{"backend": b, "aligned": 0, "note": f"could not be read layer by layer ({exc})",
                 "where": f"{b}: layer by layer: could not run ({exc})"} for b in backends]


def _oracles(source: Source, artifacts: ArtifactDir, export: ExportRecord, sets: list[InputSet],
             results: list[RunResults]) -> list[Oracle]:
    """Per input set: the float64 copy of the PyTorch model on the same inputs (each copy loaded once for every
    set); where it cannot run, a stated estimate."""
    if export.reference != "pytorch" or source.config is None:
        return _onnx_oracles(source, artifacts, export, sets, results)
    feed_sets = [s.feeds for s in sets]
    ahead = oracle_ahead.take(source, export, feed_sets)
    if ahead is None:
        with capture_output(artifacts.root / "audit.log"), stage_status("running the float64 oracle"):
            ahead = run_sets(oracle_ahead.runners(source, artifacts, export), feed_sets)
    runs, broken = ahead
    bound = _rounding_bound(artifacts)
    return [_estimated_oracle(result, next(iter(failed.values()))) if failed else _checked_oracle(run, result, bound)
            for run, failed, result in zip(runs, broken, results)]


def _checked_oracle(runs: RunResults, results: RunResults, bound: oracle_check.RoundingBound) -> Oracle:
    """The float64 run checked against PyTorch float32 before it judges anything, and the floors it gives."""
    runs = dict(runs)
    truth = runs.pop(Backend.ORACLE)
    rejected = oracle_check.check("PyTorch", results["pytorch"], truth, bound,
                                  {name: [run[name] for run in runs.values()] for name in truth})
    if rejected is not None:
        return dataclasses.replace(_estimated_oracle(results, f"the float64 oracle was not used: {rejected.reason}"),
                                   rejected=rejected.to_json())
    floors = {name: sample_floors(results["pytorch"][name], truth[name], [run[name] for run in runs.values()], NOISE_ATOL)
              for name in truth}
    spread = {name: rounding_spread(results["pytorch"][name], truth[name], [run[name] for run in runs.values()])
              for name in truth}
    return Oracle(Backend.ORACLE, True, "a float64 copy of the PyTorch model, on the same inputs", truth, floors,
                  "per sample, the largest of PyTorch float32's error against the float64 oracle and the oracle's own "
                  f"spread when weights and inputs move by one float32 rounding ({len(PERTURBATION_SEEDS)} draws)",
                  rounding_spread=spread)


def _onnx_oracles(source: Source, artifacts: ArtifactDir, export: ExportRecord, sets: list[InputSet],
                  results: list[RunResults]) -> list[Oracle]:
    """The ONNX route: the graph itself in float64 (ONNX Runtime, or onnx's reference evaluator where ONNX
    Runtime has no double kernel); the floor is ONNX Runtime float32's own error against it."""
    runner = make_runner(Backend.ORACLE_ONNX, source, artifacts, export)
    with capture_output(artifacts.root / "audit.log"), stage_status("running the float64 oracle (the ONNX graph in float64)"):
        runs, broken = run_sets([runner], [s.feeds for s in sets])
    bound = _rounding_bound(artifacts)
    return [_onnx_oracle(runner.engine, artifacts, export, at, run, failed, result, bound)
            for at, run, failed, result in zip(sets, runs, broken, results)]


def _onnx_oracle(engine: str, artifacts: ArtifactDir, export: ExportRecord, at: InputSet, run: RunResults,
                 failed: dict[str, str], results: RunResults, bound: oracle_check.RoundingBound) -> Oracle:
    """One input set's ONNX-route oracle: checked against ONNX Runtime float32 before it judges anything."""
    if failed:
        return Oracle(None, False, f"ONNX route: the graph cannot run in float64 ({failed[Backend.ORACLE_ONNX]}); the "
                                   "allclose tolerances against ONNX Runtime decide")
    truth = run[Backend.ORACLE_ONNX]
    rejected = oracle_check.check("ONNX Runtime", results["onnxruntime"], truth, bound)
    if rejected is not None:
        where = _first_divergence(artifacts, export, at.feeds)
        why = rejected.reason + (f"; the first tensor where they part: '{where['tensor']}' (node {where['node']}, "
                                 f"{where['op_type']}, {where['max_abs']:.3g})" if where else "")
        return Oracle(None, False, f"ONNX route: the float64 oracle ({engine}) was not used: {why}; the allclose "
                      "tolerances against ONNX Runtime decide", rejected={**rejected.to_json(), "first_divergence": where})
    floors = {name: sample_floors(results["onnxruntime"][name], truth[name], [], NOISE_ATOL) for name in truth}
    return Oracle(Backend.ORACLE_ONNX, True, f"ONNX route: the ONNX graph with every float32 tensor made float64, run by "
                  f"{engine}", truth, floors, "ONNX Runtime float32 against the float64 oracle")


def _rounding_bound(artifacts: ArtifactDir) -> oracle_check.RoundingBound:
    import onnx

    return oracle_check.RoundingBound.of(onnx.load(str(artifacts.onnx), load_external_data=False))


def _first_divergence(artifacts: ArtifactDir, export: ExportRecord, feeds: list) -> dict | None:
    """Where the rejected float64 graph first parts from ONNX Runtime float32 (one sample); None when
    no intermediate does, or when the search itself cannot run (the rejection stands either way)."""
    import tempfile

    try:
        with capture_output(artifacts.root / "audit.log"), stage_status("finding where the float64 oracle parts"), \
                tempfile.TemporaryDirectory() as workdir:
            return oracle_check.first_divergence(artifacts.onnx, export.inputs, feeds[0], Path(workdir))
    except Exception as exc:  # noqa: BLE001 - only the where is lost: the rejection and its reason stand, and this says why
        console.print(f"[yellow]the first tensor where the float64 oracle parts was not found: {type(exc).__name__}: "
                      f"{str(exc)[:200]}[/yellow]")
        return None


def _estimated_oracle(results: RunResults, why: str) -> Oracle:
    """No float64 run: PyTorch float32 stands in for the truth, and the spread between PyTorch and ONNX
    Runtime estimates the floor (it cannot tell which of the two is closer to the truth)."""
    if "onnxruntime" not in results:
        return Oracle(None, False, f"{why}; no estimate of the noise floor either: the allclose tolerances decide")
    floors = {name: sample_floors(results["onnxruntime"][name], ref, [], NOISE_ATOL) for name, ref in results["pytorch"].items()}
    return Oracle(None, False, f"{why}; the noise floor is estimated as the spread between PyTorch and ONNX Runtime",
                  dict(results["pytorch"]), floors, "estimate: PyTorch float32 against ONNX Runtime")


def _fp16_compute_type(path: Path) -> str:
    """What an fp16 TFLite file computes in, read from its float inputs and outputs: onnx2tf 1.x's take and give
    float32 (float16 constants, dequantized), onnx2tf 2.x's flatbuffer_direct files take and give float16 and
    compute in it. A model with integer inputs only (token ids) shows it at its outputs."""
    from ai_edge_litert.interpreter import Interpreter

    try:
        interpreter = Interpreter(model_path=str(path))
        details = interpreter.get_input_details() + interpreter.get_output_details()
    except (ValueError, RuntimeError) as exc:
        return f"an unreadable type ({first_line(exc)})"
    return "float16" if any(d["dtype"] == np.float16 for d in details) else "float32"


def _made_apart(convert: ConvertRecord) -> str | None:
    """Why the fp32 file rounded is not the fp16 file's program: the two were made by different routes, with
    their own foldings (onnx2tf 2.x: flatbuffer_direct's fp32 file, TensorFlow's converter's fp16 file)."""
    fp16, fp32 = convert.made_by.get(Backend.TFLITE_FP16), convert.made_by.get(Backend.TFLITE_FP32)
    if fp16 and fp32 and fp16 != fp32:
        return (f"the fp16 file was made by {fp16} and the fp32 file by {fp32}: their foldings differ, so the fp32 "
                "file with its constants rounded is not the fp16 file's program")
    return None


def _fp16_oracles(artifacts: ArtifactDir, export: ExportRecord, convert: ConvertRecord, sets: list[InputSet],
                  oracles: list[Oracle]) -> list[Oracle]:
    """What a correct fp16 file computes, per input set: the converter's own float32 TFLite file with its float
    constants rounded through float16 (pipeline/model/fp16_storage.py), made once and run by LiteRT on every
    set. Both are float32 programs on the same constants, so the floor is the model's float32 noise floor,
    sample by sample."""
    fp16_file = artifacts.root / convert.models[Backend.TFLITE_FP16]
    computes_in = _fp16_compute_type(fp16_file)
    why_not = (f"the fp16 file computes in {computes_in} (its float inputs or outputs are {computes_in}), not in float32 after "
               "dequantizing its constants" if computes_in != "float32" else
               "there is no TFLite fp32 file to round" if Backend.TFLITE_FP32 not in convert.models else
               _made_apart(convert))
    if why_not:
        return [Oracle(None, False, f"{why_not}: no storage reference; the fp16 file is judged by its precision budget "
                                    "alone")] * len(sets)
    from pipeline.runners.tensorflow import TFLiteRunner

    try:
        with capture_output(artifacts.root / "audit.log"), \
                stage_status("rounding the float32 TFLite file's constants as float16 storage does"), \
                profile.step("audit: fp16 storage reference"):
            stored = stored_file(artifacts.root / convert.models[Backend.TFLITE_FP32], cured=bool(convert.fp16_onnx))
            runner = TFLiteRunner(stored, convert.io, export.inputs, export.outputs, "fp32")
            runner.name = Backend.FP16_STORAGE
            runs, broken = run_sets([runner], [s.feeds for s in sets])
    except (RunnerError, ValueError, OSError) as exc:
        broken = [{Backend.FP16_STORAGE: first_line(exc)}] * len(sets)
        runs = [{} for _ in sets]
    return [_fp16_oracle(convert, run, failed, oracle) for run, failed, oracle in zip(runs, broken, oracles)]


def _fp16_oracle(convert: ConvertRecord, run: RunResults, failed: dict[str, str], oracle: Oracle) -> Oracle:
    """One input set's fp16 storage reference, floored by the model's float32 floor there."""
    if failed:
        return Oracle(None, False, f"the fp16 storage reference could not be made or run ({first_line(failed[Backend.FP16_STORAGE])}); "
                                   "the fp16 file is judged by its precision budget alone")
    truth = run[Backend.FP16_STORAGE]
    floors = {name: np.maximum(sample_floors(values, values, [], NOISE_ATOL), oracle.sample_floors[name])
              if name in oracle.sample_floors else sample_floors(values, values, [], NOISE_ATOL)
              for name, values in truth.items()}
    cured = " (the fp16 cure's epsilons raised as in the shipped file)" if convert.fp16_onnx else ""
    return Oracle(Backend.FP16_STORAGE, True, "the converter's own float32 TFLite file with every float constant "
                  f"rounded through float16 as the fp16 file stores it{cured}, run by LiteRT", truth, floors,
                  "per sample, the model's float32 noise floor (at least 16 roundings of the output's scale)",
                  rounding_spread=oracle.rounding_spread)  # a sample set by rounding judges no float32 program


def _budgets(source: Source) -> dict[str, PrecisionBudget]:
    """The budgets the config sets (a miss fails); the defaults only warn (judge.DEFAULT_BUDGETS)."""
    budgets: dict[str, PrecisionBudget] = {}
    if source.config is not None:
        for precision, budget in source.config.precision_budget.items():
            budgets[precision] = PrecisionBudget(budget.min_snr_db, budget.min_top1, budget.min_top5)
    return budgets


def _overrides(source: Source) -> dict[str, Tolerance]:
    if source.config is None:
        return {}
    return {key: Tolerance(t.atol, t.rtol) for key, t in source.config.tolerances.items()}


def _classification(source: Source) -> set[str] | None:
    if source.config is None or source.config.classification_outputs == "auto":
        return None
    return set(source.config.classification_outputs)
