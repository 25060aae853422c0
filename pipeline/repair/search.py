"""The repair search: numeric fallbacks after the audit, guided by its localization.

Runs only when the audit failed a float32 TF backend while ONNX Runtime agreed with the
reference: the converter, not the export, is wrong. A model whose conversion is correct never
gets here. Each candidate is converted for real in a trial folder and judged by the real audit
on every shared sample and edge case; the first that passes replaces the shipped TF artifacts.
The search is bounded by `repair.max_candidates` and `repair.max_seconds` from the config.
"""
from __future__ import annotations

import dataclasses
import json
import math
import os
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path

import onnx

from pipeline import inputs as shared_inputs
from pipeline.artifacts.folder import ArtifactDir, write_json
from pipeline.artifacts.records import Attempt, AuditRecord, ConvertRecord, ExportRecord
from pipeline.config import ARTIFACTS, RepairConfig, Source
from pipeline.console import console
from pipeline.repair.candidates import Candidate, candidates
from pipeline.repair.localize import first_departure, graph_position
from pipeline.repair.screen import SCREENS, screen
from pipeline.artifacts.repair_record import PRF_FILE, RECORD, BackendError, Divergence, RepairAttempt, RepairRecord
from pipeline.convert.layer_model import FOLDER as LAYERS_FOLDER
from pipeline.convert.fp16_cure import FILES as FP16_CURE_FILES
from pipeline.convert.rewrite import REWRITTEN
from pipeline.convert.stage import Strategy, strategies
from pipeline.errors import PipelineError
from pipeline.names import PRECISION, Backend

TF_FP32 = ("tf_saved_model", "keras", "tflite_fp32")
TF_BACKENDS = TF_FP32 + ("tflite_fp16",)
TRIAL_INPUTS = ("model.onnx", "inputs.npz", "export.json", "validate.json", "lint.json", "outputs")
TRIALS = ".repair"


def trigger(audit: AuditRecord) -> str | None:
    """Why the converter (not the export) is wrong, or None when there is nothing to repair."""
    failed = sorted({c.candidate for c in audit.comparisons if c.candidate in TF_FP32 and c.verdict == "fail"})
    onnx_failed = any(c.candidate == "onnxruntime" and c.verdict == "fail" for c in audit.comparisons)
    if not failed or onnx_failed:
        return None
    agrees = "ONNX Runtime agrees with PyTorch" if audit.reference == "pytorch" else "ONNX Runtime is the reference"
    return f"{', '.join(failed)} failed the audit while {agrees}: the converter, not the export, is wrong"


def repair_if_needed(source: Source, artifacts: ArtifactDir) -> RepairRecord | None:
    """Search for a repair when the audit calls for one; write repair.json and update convert.json."""
    audit = artifacts.read(AuditRecord)
    why = trigger(audit)
    if why is None:
        return None
    bounds = source.config.repair if source.config is not None else RepairConfig()
    console.print(f"repair: {why}; searching (at most {bounds.max_candidates} candidates, {bounds.max_seconds:g} s)")
    earlier = artifacts.read(ConvertRecord).attempts
    record = search(source, artifacts, audit, why, bounds)
    _write(artifacts, record, earlier)
    console.print(f"repair: {_summary(record)}")
    return record


@dataclass
class _Search:
    """The search's moving parts: the queue of candidates, and the replacement entries kept so far."""

    base: Strategy
    specs: list
    raised: tuple[str, ...]
    queue: list[Candidate]
    best_error: float
    position: int = -1  # graph position of the current first departure
    departure_error: float = float("inf")  # the TF model's error at that departure
    outputs_error: dict[str, float] | None = None  # the TF layer model's error at each graph output, then
    errors: dict[tuple[str, str], float] = field(default_factory=dict)  # each fp32 TF backend's error per output, then
    kept: Candidate | None = None
    tried: int = 0


def search(source: Source, artifacts: ArtifactDir, audit: AuditRecord, why: str, bounds: RepairConfig) -> RepairRecord:
    start = time.perf_counter()
    convert = artifacts.read(ConvertRecord)
    specs = artifacts.read(ExportRecord).inputs
    divergence = divergence_of(audit)
    base = _base_strategy(convert, specs)
    fine = _departure(source, artifacts, base)
    raised = tuple(a.strategy for a in convert.attempts if not a.ok)
    converted = onnx.load(str(_converted(artifacts.root, base)))
    listed = candidates(converted, [d for d in (fine, divergence) if d], base, specs, raised)
    before = backend_errors(audit)
    aimless = [c for c in listed if c.kind in LAYOUT_KINDS] if _nothing_off(audit.comparisons, divergence, fine) else []
    listed = [c for c in listed if c not in aimless]
    if aimless:
        console.print(f"repair: {len(aimless)} layout candidates not tried: {NOTHING_OFF}")
    state = _Search(base, specs, raised, listed, _worst(before) or float("inf"),
                    position=graph_position(converted, fine),
                    departure_error=_error_at(fine), outputs_error=fine.outputs_error if fine is not None else None,
                    errors=_by_output(before))
    attempts: list[RepairAttempt] = []
    winner, gave_up = None, None
    while state.queue:
        elapsed = time.perf_counter() - start
        if state.tried >= bounds.max_candidates or elapsed >= bounds.max_seconds:
            gave_up = _gave_up(state.tried, state.tried + len(state.queue), elapsed, bounds)
            break
        candidate = _on_top_of(state.kept, state.queue.pop(0))
        console.print(f"repair: candidate {state.tried + 1}/{state.tried + 1 + len(state.queue)} '{candidate.name}' ({candidate.why})")
        if candidate.strategy is None and _screened_out(source, artifacts, state, candidate, attempts):
            continue
        attempt, trial = _try(source, artifacts, candidate, base, state.tried)
        attempts.append(attempt)
        state.tried += 1
        console.print(f"repair: '{candidate.name}' -> {'PASS' if attempt.passed else attempt.error}")
        if attempt.passed:
            winner = (candidate, trial, attempt)
            break
        _keep_if_better(source, state, candidate, attempt, trial)
    else:
        gave_up = f"all {state.tried} candidates tried; none passed the audit" if attempts else "no candidate to try"
    if aimless and gave_up:
        gave_up += f"; {len(aimless)} layout candidates not tried: {NOTHING_OFF}"
    return _record(artifacts, audit, why, (divergence, fine), attempts, winner, gave_up, bounds, time.perf_counter() - start)


LAYOUT_KINDS = ("transpose-perm", "output-transpose", "input-transpose")
NOTHING_OFF = ("no float32 TF backend's numbers are off (the failing ones could not load or run) and nothing was "
               "localized; a layout change moves numbers, not whether a file loads")


def _nothing_off(comparisons: list, divergence: Divergence | None, fine: Divergence | None) -> bool:
    """Whether every failing float32 TF comparison is a backend that could not load or run (a Keras file that does
    not load back, a TFLite op LiteRT refuses: `compare.not_run`, its `error` set) and nothing was localized: layout
    candidates have nothing to aim at (RoBERTa spent 12 conversions on them while its Keras file did not load).
    A backend that ran and gave NaN is numbers off, not this."""
    off = [c for c in comparisons if c.verdict == "fail" and c.candidate in TF_FP32]
    return divergence is None and fine is None and bool(off) and all(c.error for c in off)


def _screened_out(source: Source, artifacts: ArtifactDir, state: _Search, candidate: Candidate,
                  attempts: list[RepairAttempt]) -> bool:
    """A layout candidate the layer-model screen turns down (screen.py: the departure did not move on, or
    moved only past the nodes it replaced) is recorded as tried, for one graph build; any other is converted."""
    start = time.perf_counter()
    onnx_path = _converted(artifacts.root, state.base)
    screened = screen(source, artifacts, candidate, onnx_path, artifacts.root / TRIALS / SCREENS)
    if not screened.turned_down(state.position, state.departure_error / IMPROVEMENT, state.outputs_error):
        return False
    reason = screened.reason(state.position, state.outputs_error)
    attempts.append(_attempt(candidate, False, False, start, reason))
    state.tried += 1
    console.print(f"repair: '{candidate.name}' -> {reason}")
    return True


IMPROVEMENT = 100.0  # a candidate that cuts the worst error this much fixed one bug


def _keep_if_better(source: Source, state: _Search, candidate: Candidate, attempt: RepairAttempt, trial: Path) -> None:
    """A model can hold the same converter bug more than once (a LayerNorm between permutes in every
    block): a candidate that fixes one (the TF model now departs later in the graph, or the error
    dropped a hundredfold) is kept, and the search goes on from the new departure with it applied."""
    if candidate.strategy is None and attempt.converted:
        departure = _departure(source, ArtifactDir(trial), state.base, candidate)
        model = onnx.load(str(_converted(trial, state.base)))
        position = graph_position(model, departure)
        fewer = attempt.max_abs is not None and attempt.max_abs * IMPROVEMENT <= state.best_error
        if departure is not None and (position > state.position or fewer) and not _unchanged(attempt, state):
            following = [c for c in candidates(model, [departure], state.base, state.specs, state.raised) if c.strategy is None]
            console.print(f"repair: keeping '{candidate.name}' (worst error {state.best_error:.3g} -> {attempt.max_abs:.3g}); "
                          f"the TF model now departs later, at {departure.op_type} '{departure.node}'")
            state.kept, state.position, state.departure_error = candidate, position, _error_at(departure)
            state.outputs_error, state.errors = departure.outputs_error, _by_output(attempt.errors)
            state.best_error = min(state.best_error, attempt.max_abs or state.best_error)
            state.queue = following + state.queue
    shutil.rmtree(trial, ignore_errors=True)


def _unchanged(attempt: RepairAttempt, state: _Search) -> bool:
    """A candidate after which every backend's error at every output is what it was changed nothing the
    outputs show: its later departure is only the comparison passing over the nodes it replaced (BiT: 11
    such kept in a row, every one still 0.573 off). One output changed is enough to keep it (a multi-output
    model with a bug per branch)."""
    after = _by_output(attempt.errors)
    shared = set(after) & set(state.errors)
    return bool(shared) and all(math.isclose(after[k], state.errors[k], rel_tol=1e-6) for k in shared)


def _by_output(errors: list[BackendError]) -> dict[tuple[str, str], float]:
    return {(e.backend, e.output): e.max_abs for e in errors if e.max_abs is not None}


def _error_at(departure: Divergence | None) -> float:
    return departure.error_out if departure is not None and departure.error_out is not None else float("inf")


def _on_top_of(kept: Candidate | None, candidate: Candidate) -> Candidate:
    """The candidate's replacement entries added to those kept so far (its own win for the same parameter)."""
    if kept is None or candidate.strategy is not None:
        return candidate
    own = {(e["op_name"], e["param_target"], e["param_name"]) for e in candidate.entries}
    entries = [e for e in kept.entries if (e["op_name"], e["param_target"], e["param_name"]) not in own] + candidate.entries
    return dataclasses.replace(candidate, name=f"{kept.name}+{candidate.name}", entries=entries)


def _converted(root: Path, base: Strategy) -> Path:
    """The ONNX file the base strategy converts in this folder."""
    return root / REWRITTEN if base.rewrite and (root / REWRITTEN).exists() else root / "model.onnx"


def _departure(source: Source, artifacts: ArtifactDir, base: Strategy, replaced: Candidate | None = None) -> Divergence | None:
    """The finer localization; a best-effort aid: when it cannot run, the audit's localization guides alone."""
    skip = frozenset(e["op_name"] for e in replaced.entries) if replaced is not None else frozenset()
    try:
        fine = first_departure(source, artifacts, _converted(artifacts.root, base),
                               shared_inputs.feeds(shared_inputs.load_npz(artifacts.inputs)), skip)
    except Exception as exc:  # noqa: BLE001 (any runner failure here only costs guidance; it is printed)
        console.print(f"repair: no finer localization ({type(exc).__name__}: {str(exc)[:200]})")
        return None
    if fine is not None:
        console.print(f"repair: the TF layer model first departs from ONNX Runtime at {fine.op_type} '{fine.node}' "
                      f"(error {fine.error_in:.3g} -> {fine.error_out:.3g})")
    return fine


def _worst(errors: list[BackendError]) -> float | None:
    return max((e.max_abs for e in errors if e.backend in TF_FP32 and e.max_abs is not None), default=None)


def divergence_of(audit: AuditRecord) -> Divergence | None:
    """The localization of the failing TF layer model (keras), when the audit found one."""
    for entry in audit.localization or []:
        if entry.get("candidate") == "keras" and entry.get("found"):
            return Divergence(entry["candidate"], entry["node"], entry["op_type"], entry.get("module"), entry.get("error_in"),
                              entry.get("error_out"), entry.get("origin"), list(entry.get("unaligned_span") or []))
    return None


def _base_strategy(convert: ConvertRecord, specs) -> Strategy:
    """The strategy that produced the shipped artifacts; the candidates change it."""
    listed = {s.name: s for s in strategies(specs, tuple(convert.options.get("outputs") or ARTIFACTS))}
    return listed.get(convert.strategy, listed["default"])


def _gave_up(index: int, total: int, elapsed: float, bounds: RepairConfig) -> str:
    if index >= bounds.max_candidates:
        return f"candidate budget spent: {index} of {total} candidates tried (repair.max_candidates {bounds.max_candidates})"
    return f"time budget spent: {elapsed:.0f} s after {index} of {total} candidates (repair.max_seconds {bounds.max_seconds:g})"


def _try(source: Source, artifacts: ArtifactDir, candidate: Candidate, base: Strategy, index: int) -> tuple[RepairAttempt, Path]:
    """Convert and audit one candidate in its own trial folder."""
    from pipeline.audit import stage as audit_stage
    from pipeline.convert import stage as convert_stage

    trial = _trial_folder(artifacts, index)
    strategy = _strategy(candidate, base, trial.root, index)
    start = time.perf_counter()
    try:
        convert_stage.run(source, trial, chosen=[strategy])
        result = audit_stage.run(source, trial)
    except PipelineError as exc:
        return _attempt(candidate, False, False, start, _short(str(exc))), trial.root
    except Exception as exc:  # noqa: BLE001 (a candidate that crashes a runner is that candidate's failure, recorded)
        return _attempt(candidate, False, False, start, f"{type(exc).__name__}: {_short(str(exc))}"), trial.root
    errors = backend_errors(result)
    worst = _worst(errors)
    passed = float32_passed(result)
    error = None if passed else _still_failing(result, errors)
    return dataclasses.replace(_attempt(candidate, True, passed, start, error), max_abs=worst, errors=errors), trial.root


def _still_failing(result: AuditRecord, errors: list) -> str:
    """Why a converted candidate failed: its worst float32 TF backend's error, or why that backend could not run."""
    failing = next((e for e in sorted(errors, key=lambda e: -(e.noise_ratio or 0)) if e.verdict == "fail" and e.backend in TF_FP32), None)
    if failing is None:
        return "audit: failed"
    if failing.max_abs is None or not math.isfinite(failing.max_abs):
        why = next((c.reason for c in result.comparisons if (c.candidate, c.output, c.verdict) ==
                    (failing.backend, failing.output, "fail") and c.reason), "no finite output")
        return f"audit: {failing.backend} '{failing.output}' failed: {_short(why)}"
    return (f"audit: {failing.backend} '{failing.output}' still off by {failing.max_abs:.3g}"
            + (f" ({failing.noise_ratio:.3g}x its noise floor)" if failing.noise_ratio else ""))


def float32_passed(audit: AuditRecord) -> bool:
    """Whether a candidate mended the model: no float32 backend fails. Each precision is judged on its own:
    fp16 or int8 may still fail for a reason of their own (float16 storage, calibration) that no layout
    candidate can change; the report says which files are shippable."""
    return not any(c.verdict == "fail" for c in audit.comparisons if PRECISION.get(c.candidate, "fp32") == "fp32")


def _attempt(candidate: Candidate, converted: bool, passed: bool, start: float, error: str | None) -> RepairAttempt:
    return RepairAttempt(candidate.name, candidate.kind, candidate.why, list(candidate.entries), converted, passed,
                         round(time.perf_counter() - start, 3), error)


def _short(message: str) -> str:
    return message.split("; full log:")[0][:400]


def _trial_folder(artifacts: ArtifactDir, index: int) -> ArtifactDir:
    root = artifacts.root / TRIALS / f"{index:02d}"
    shutil.rmtree(root, ignore_errors=True)
    root.mkdir(parents=True)
    for name in TRIAL_INPUTS:
        source = artifacts.root / name
        if source.is_dir():
            shutil.copytree(source, root / name)
        elif source.exists():
            shutil.copy2(source, root / name)
    return ArtifactDir(root)


def _strategy(candidate: Candidate, base: Strategy, trial: Path, index: int) -> Strategy:
    if candidate.strategy is not None:
        return dataclasses.replace(candidate.strategy, name=f"repair-{index + 1}-{candidate.strategy.name}")
    prf = trial / PRF_FILE
    prf.write_text(json.dumps({"format_version": 1, "operations": candidate.entries}, indent=2) + "\n")
    options = dataclasses.replace(base.options, param_replacement_file=prf.resolve(), auto_replacement=False)
    return Strategy(f"repair-{index + 1}-{candidate.kind}", options, candidate.why, base.rewrite)


def backend_errors(audit: AuditRecord) -> list[BackendError]:
    """Each TF backend's output comparisons, the error measured against the oracle where there is one."""
    out = []
    for c in audit.comparisons:
        if c.candidate in TF_BACKENDS:
            error = c.oracle_error if c.oracle_error is not None else c.max_abs
            out.append(BackendError(c.candidate, c.output, c.verdict, error, c.noise_floor, c.noise_ratio))
    return out


def _record(artifacts, audit, why, divergences, attempts, winner, gave_up, bounds, seconds) -> RepairRecord:
    if winner is not None:
        candidate, trial, attempt = winner
        _promote(artifacts, trial, candidate, attempt)
    shutil.rmtree(artifacts.root / TRIALS, ignore_errors=True)
    return RepairRecord(
        trigger=why, before=backend_errors(audit), divergence=divergences[0], departure=divergences[1], attempts=attempts,
        winner=winner[0].name if winner else None, entries=list(winner[0].entries) if winner else [],
        rewrite=_rewrite_note(artifacts) if winner and (artifacts.root / REWRITTEN).exists() else None,
        after=winner[2].errors if winner else [], gave_up=gave_up,
        max_candidates=bounds.max_candidates, max_seconds=bounds.max_seconds, seconds=round(seconds, 3),
    )


def _rewrite_note(artifacts: ArtifactDir) -> str | None:
    convert = artifacts.read(ConvertRecord)
    return next((note for note in convert.notes if REWRITTEN in note), None)


def _promote(artifacts: ArtifactDir, trial: Path, candidate: Candidate, attempt: RepairAttempt) -> None:
    """The winner's TF models, convert and audit records replace the shipped ones."""
    old = artifacts.read(ConvertRecord)
    for name in [*old.models.values(), "layers.keras", LAYERS_FOLDER, "tflite_builtin.json", REWRITTEN, *FP16_CURE_FILES]:
        _remove(artifacts.root / name)
    for output in _outputs_of_the_old_files(artifacts, old):  # the winner's audit writes its own, or none (no Keras file)
        output.unlink()
    for entry in trial.iterdir():
        if entry.name in TRIAL_INPUTS[:-1] or entry.name.startswith(".staging-"):
            continue
        if entry.name == "outputs":
            for output in entry.iterdir():
                os.replace(output, artifacts.outputs / output.name)
            continue
        _remove(artifacts.root / entry.name)
        os.replace(entry, artifacts.root / entry.name)


def _outputs_of_the_old_files(artifacts: ArtifactDir, old: ConvertRecord) -> list[Path]:
    """outputs/*.npz of the replaced TF files and of what was made from them (the fp16 storage reference), at
    every shape: a winner made by 2.x ships no Keras file, so the old Keras outputs would outlive their file."""
    made_from_them = {*old.models, Backend.FP16_STORAGE}
    return [path for path in artifacts.outputs.glob("*.npz") if path.stem.split("@")[0] in made_from_them]


def _remove(path: Path) -> None:
    if path.is_dir():
        shutil.rmtree(path)
    elif path.exists():
        path.unlink()


def _write(artifacts: ArtifactDir, record: RepairRecord, earlier: list[Attempt]) -> None:
    """repair.json, and convert.json (the winner's, when there is one) with the attempts before the
    search followed by every candidate."""
    convert = artifacts.read(ConvertRecord)
    tried = [Attempt(f"repair: {a.name}", a.passed, a.seconds, a.error) for a in record.attempts]
    notes = convert.notes + ([f"repaired by the search: '{record.winner}' (see {RECORD})"] if record.repaired else [])
    options = {**convert.options, **({"param_replacement_file": PRF_FILE} if record.entries else {})}
    updated = dataclasses.replace(convert, attempts=[*earlier, *tried], notes=notes, options=options)
    write_json(artifacts.stage_record("convert"), updated)
    write_json(artifacts.root / RECORD, record)
    if record.entries:
        (artifacts.root / PRF_FILE).write_text(json.dumps({"format_version": 1, "operations": record.entries}, indent=2) + "\n")


def _summary(record: RepairRecord) -> str:
    if record.repaired:
        worst = max((e.max_abs for e in record.after if e.backend in TF_FP32 and e.max_abs is not None), default=None)
        return (f"repaired by '{record.winner}' after {len(record.attempts)} candidate conversion(s) "
                f"({record.seconds:.0f} s); worst fp32 TF error now {worst:.3g}")
    best = record.best()
    closest = f"; the closest, '{best.name}', is still off by {best.max_abs:.3g}" if best else ""
    return f"no repair found ({record.gave_up}){closest}; the verdict stays fail"
