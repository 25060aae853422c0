"""Stage 3, convert: model.onnx -> saved_model/, model.keras, model_float{32,16}.tflite.

Also records, in convert.json, how each TF input and output maps to the ONNX one
(name, position, layout), so the TF runners can adapt feeds and outputs.
"""
from __future__ import annotations

import dataclasses
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from pipeline import inputs as shared_inputs
from pipeline import profile
from pipeline.artifacts.folder import ArtifactDir, write_json
from pipeline.artifacts.records import Attempt, ConvertRecord, ExportRecord, LintRecord
from pipeline.config import ARTIFACTS, Source
from pipeline.convert import isolate
from pipeline.convert.isolate import Limits, run_isolated
from pipeline.console import stage_status
from pipeline.convert import int8_step
from pipeline.convert.head_start import HeadStart, relocated
from pipeline.convert.rewrite import prepared
from pipeline.converters import ConversionOptions, ConversionResult, get_converter
from pipeline.convert import calibration
from pipeline.errors import ConversionCrashed, ConversionError, first_line
from pipeline.inputs import TensorSpec
from pipeline.runners.layout import Layout, candidates, decide, resolve_by_probe
from pipeline.runners.remote import wrap
from pipeline.runners.tensorflow import TFSavedModelRunner
from pipeline.runners.tf_io import TensorBinding, TFModelIO

FAILED_LOG = "convert.failed.log"
REWRITE_WHY = ("onnx2tf cannot build some function ops (LayerNormalization over [C, H, W], ...) or builds them on the "
               "wrong axes: convert onnx's own expansion of them into primitive ops, verified with ONNX Runtime first")


@dataclass(frozen=True)
class Strategy:
    """One documented way to run the converter; tried in order until one works."""

    name: str
    options: ConversionOptions
    why: str
    rewrite: bool = False  # convert onnx's expansion of function ops (pipeline/convert/rewrite.py), not model.onnx
    converter: str = "onnx2tf"  # the registry's name (pipeline/converters/__init__.py)

    def with_int8(self, int8) -> "Strategy":
        return dataclasses.replace(self, options=dataclasses.replace(self.options, int8=int8))


def strategies(specs: list[TensorSpec], outputs: tuple[str, ...] = ARTIFACTS) -> list[Strategy]:
    """Every strategy, each writing `outputs` (the config's `artifacts`)."""
    names = tuple(spec.name for spec in specs if len(spec.shape) in (3, 4, 5))
    listed = [
        Strategy("default", ConversionOptions(outputs=outputs), "onnx2tf's defaults"),
        Strategy("no-onnxsim", ConversionOptions(use_onnxsim=False, outputs=outputs),
                 "onnxsim can rewrite a graph into a form the converter cannot handle"),
        Strategy("keep-nchw-inputs", ConversionOptions(keep_nchw_inputs=names, outputs=outputs),
                 "keeps channel-first inputs, so ops that normalise over channels see the axes they expect"),
        Strategy("auto-replacement-json", ConversionOptions(auto_replacement=True, outputs=outputs),
                 "onnx2tf generates a parameter-replacement file for the failing op and converts again with it"),
        Strategy("rewrite-function-ops", ConversionOptions(outputs=outputs), REWRITE_WHY, rewrite=True),
        second_converter(outputs),
    ]
    return [s for s in listed if s.name != "keep-nchw-inputs" or names]


SECOND_CONVERTER = "onnx2tf-2"


def second_converter(outputs: tuple[str, ...] = ARTIFACTS) -> Strategy:
    """onnx2tf 2.x with its defaults: a converter of its own (flatbuffer_direct), tried when every 1.x strategy
    failed, and by the repair search before its layout candidates when the audit caught a 1.x model wrong."""
    return Strategy(SECOND_CONVERTER, ConversionOptions(outputs=outputs),
                    "onnx2tf 2.x lowers ONNX to TFLite and the SavedModel by its own route (flatbuffer_direct), "
                    "without 1.x's TF graph", converter="onnx2tf2")


def run(source: Source, artifacts: ArtifactDir, only: list[str] | None = None,
        chosen: list[Strategy] | None = None, head: HeadStart | None = None) -> ConvertRecord:
    """Convert model.onnx, trying each strategy in turn, check the SavedModel structurally
    (the lint rules of the "tf" phase) and write convert.json.

    Raises ConversionError naming every strategy's failure when none works; the
    artifacts of the last good run are left untouched. A head start (head_start.py) that
    converted this very file stands in for its strategy's attempt."""
    from pipeline.lint.stage import run_tf

    onnx_path = artifacts.require(artifacts.onnx, "export")
    export = artifacts.read(ExportRecord)
    specs = export.inputs
    reference = _reference_outputs(artifacts)
    first_feed = shared_inputs.feeds(shared_inputs.load_npz(artifacts.require(artifacts.inputs, "export")))[0]
    int8 = calibration.request(source, artifacts, specs)  # None unless the config asks for int8
    attempts: list[Attempt] = []
    with artifacts.staging() as stage:
        log_path = stage / "convert.log"
        listed = chosen or strategies(specs, outputs_for(source))
        for strategy in [s.with_int8(int8) for s in listed if only is None or s.name in only]:
            try:
                strategy_onnx, notes = prepared(strategy, onnx_path, artifacts, stage)
            except ConversionError as exc:
                attempts.append(Attempt(strategy.name, False, 0.0, str(exc)))
                continue
            served = head if head is not None and head.serves(strategy.name, strategy_onnx) else None
            outcome = _attempt(get_converter(strategy.converter), strategy, strategy_onnx, stage, log_path, (specs, export.outputs, reference, first_feed),
                               limits_for(source), served)
            attempts.append(outcome.summary)
            if outcome.result is None and strategy_onnx != onnx_path:
                strategy_onnx.unlink(missing_ok=True)  # a failed rewrite is not shipped
            if outcome.result is not None:
                _promote(stage / strategy.name, stage)
                with profile.step("convert: fp16 cure"):
                    notes += _cure_fp16(source, artifacts, stage, strategy, strategy_onnx, outcome, log_path)
                with profile.step("convert: TF-side lint"):  # after the cure: the TFLite rules read the shipped files
                    tf_lint = run_tf(source, artifacts, outcome.result.saved_model, outcome.result.tflite)
                record = _record(outcome.result, outcome.io, outcome.seconds, strategy, attempts, tf_lint)
                record = dataclasses.replace(record, notes=record.notes + notes + _other_converter_note(attempts)
                                             + _unavailable_notes(listed), fp16_onnx=_fp16_source(stage))
                with profile.step("convert: int8 layers and selective int8"):
                    record = int8_step.run(int8_step.Int8Step(source, artifacts, stage, int8, outcome.result, record))
                write_json(stage / "convert.json", record)
                return record
        _keep_failed_log(log_path, artifacts)
    raise ConversionError(_all_failed(attempts, artifacts.shown(artifacts.root / FAILED_LOG)))


@dataclass
class _Outcome:
    summary: Attempt
    result: ConversionResult | None = None
    io: TFModelIO | None = None
    seconds: float = 0.0


def _attempt(converter, strategy: Strategy, onnx_path: Path, stage: Path, log_path: Path, binding_args,
             limits: Limits, head: HeadStart | None = None) -> _Outcome:
    out_dir = stage / strategy.name
    start = time.perf_counter()
    made_by = f"{converter.label} {converter.version()}"
    # A head start's conversion began before this stage: its own duration, not the wait for it.
    elapsed = lambda: head.seconds if head is not None else time.perf_counter() - start  # noqa: E731
    try:
        with stage_status(f"converting with {made_by}, strategy '{strategy.name}'"):
            result = _converted(converter, strategy, onnx_path, out_dir, log_path, limits, head)
        with profile.step("convert: bind inputs and outputs (layout probe)"):
            io = bind(result, *binding_args)
    except ConversionError as exc:
        shutil.rmtree(out_dir, ignore_errors=True)  # a failed attempt's half-written files are not shipped; its log is kept
        return _Outcome(Attempt(strategy.name, False, round(elapsed(), 3), str(exc), made_by))
    seconds = elapsed()
    result = relocated(result, out_dir, stage)
    return _Outcome(Attempt(strategy.name, True, round(seconds, 3), converter=made_by), result, io, seconds)


# TensorFlow's oneDNN kernels crashed onnx2tf 1.x's conversion of WavLM (SIGSEGV in a MatMul it runs while
# building the graph, "corrupted double-linked list"); the same conversion without them completes.
WITHOUT_ONEDNN = {"TF_ENABLE_ONEDNN_OPTS": "0"}


def _converted(converter, strategy: Strategy, onnx_path: Path, out_dir: Path, log_path: Path, limits: Limits,
               head: HeadStart | None) -> ConversionResult:
    """The strategy's conversion (the head start's, when it serves); when native code crashed it, once more
    in a new process with TensorFlow's oneDNN kernels off, saying so in its notes."""
    try:
        return head.take(out_dir, log_path) if head is not None else _convert(converter, strategy, onnx_path, out_dir, log_path, limits)
    except ConversionCrashed as crash:
        said = first_line(crash)
    shutil.rmtree(out_dir, ignore_errors=True)
    with log_path.open("a") as log:
        log.write(f"\n===== {said}: converting again with TensorFlow's oneDNN kernels off =====\n")
    result = _convert(converter, strategy, onnx_path, out_dir, log_path, limits, WITHOUT_ONEDNN)
    isolate.keep_environment(WITHOUT_ONEDNN)  # the layer model, the fp16 cure and repair candidates convert again
    return dataclasses.replace(result, notes=[
        f"{said.split(': ', 1)[-1]}; converted again in a new process with TensorFlow's oneDNN kernels off "
        "(TF_ENABLE_ONEDNN_OPTS=0), which completed"] + result.notes)


def _convert(converter, strategy: Strategy, onnx_path: Path, out_dir: Path, log_path: Path, limits: Limits,
             env: dict[str, str] | None = None) -> ConversionResult:
    missing = converter.available()
    if missing:  # said in the attempt, and so in the report; no child process for it
        raise ConversionError(missing)
    out_dir.mkdir()
    with log_path.open("a") as log:
        log.write(f"\n===== strategy '{strategy.name}': {strategy.why} =====\n")
    return run_isolated(converter.convert, (onnx_path, out_dir, log_path, strategy.options), limits,
                        f"strategy '{strategy.name}'", env)


def _cure_fp16(source: Source, artifacts: ArtifactDir, stage: Path, strategy: Strategy, onnx_path: Path,
               outcome: "_Outcome", log_path: Path) -> list[str]:
    """The fp16 cure (fp16_cure.py) for the fp16_underflow findings on the converted ONNX file, if any."""
    from pipeline.convert import fp16_cure
    from pipeline.runners.tensorflow import TFLiteRunner

    if "fp16" not in outcome.result.tflite:
        return []
    findings = fp16_cure.curable(_fp16_findings(artifacts, onnx_path))
    if not findings:
        return []
    export = artifacts.read(ExportRecord)
    feeds = shared_inputs.feeds(shared_inputs.load_npz(artifacts.require(artifacts.inputs, "export")))
    reference_name = "pytorch" if artifacts.output_file("pytorch").exists() else "onnxruntime"
    fp16_only = dataclasses.replace(strategy, options=dataclasses.replace(strategy.options, outputs=("tflite_fp16",), int8=None))

    def convert_fp16(cured: Path, out_dir: Path):
        with log_path.open("a") as log:
            log.write(f"\n===== fp16 cure: converting {cured.name} for the TFLite fp16 file =====\n")
        return run_isolated(get_converter(strategy.converter).convert, (cured, out_dir, log_path, fp16_only.options), limits_for(source), "the fp16 cure")

    def run_tflite(path: Path) -> list[dict]:
        with TFLiteRunner(path, outcome.io, export.inputs, export.outputs, "fp16") as runner:
            return [runner.infer(feed) for feed in feeds]

    reference = shared_inputs.load_npz(artifacts.require(artifacts.output_file(reference_name), "validate"))
    job = fp16_cure.CureJob(onnx_path, stage, findings, convert_fp16, run_tflite, reference, reference_name,
                            outcome.result.tflite.get("fp32"))
    with stage_status("fp16 cure: raising the epsilons float16 flushes to 0"):
        return fp16_cure.run(job)


def _fp16_source(stage: Path) -> str | None:
    """The ONNX graph whose cure the shipped fp16 file carries, when the cure swapped it in: the file was made
    from it (converted again), or patched to the same values (fp16_patch.py)."""
    from pipeline.convert.fp16_cure import CURED_ONNX, UNCURED

    return CURED_ONNX if (stage / UNCURED).exists() else None


def _fp16_findings(artifacts: ArtifactDir, onnx_path: Path):
    """fp16_underflow on the file converted (model.onnx or a rewrite of it), with the modules lint.json named."""
    from pipeline.convert.fp16_cure import CURED_RULES
    from pipeline.lint import run_rules
    from pipeline.lint.context import LintContext
    from pipeline.model.onnx_import import load_onnx

    found = run_rules(LintContext(load_onnx(onnx_path)), only=list(CURED_RULES))
    lint = artifacts.read_if_any(LintRecord)
    modules = {f.node: f.module for f in (lint.findings if lint else []) if f.module}
    return [dataclasses.replace(f, module=modules.get(f.node)) for f in found]


def start_early(source: Source, artifacts: ArtifactDir) -> HeadStart | None:
    """The first strategy's conversion, started right after the export (see head_start.py); None when
    the config asks for int8 (its calibration file is written by this stage, in its turn)."""
    if source.config is not None and source.config.quantize.int8 is not None:
        return None
    first = strategies(artifacts.read(ExportRecord).inputs, outputs_for(source))[0]
    return HeadStart(get_converter(first.converter), first.name, first.options, artifacts, limits_for(source), first.why)


def prewarm(source: Source) -> None:
    """Start the conversion child now, so its imports run while the parent exports. On the ONNX route there
    is no export: the parent leaves a core idle, so the converter's helpers start before its imports."""
    from pipeline.convert import isolate

    isolate.prewarm(get_converter(strategies([])[0].converter).warm_up, source.kind == "onnx")


def outputs_for(source: Source) -> tuple[str, ...]:
    """The files the config asks for (`artifacts`); all of them on the ONNX route."""
    return tuple(source.config.artifacts) if source.config is not None else ARTIFACTS


def limits_for(source: Source) -> Limits:
    """The config's `convert` limits per attempt, or the defaults (the ONNX route has no config)."""
    from pipeline.config import ConvertLimitsConfig

    limits = source.config.convert if source.config is not None else ConvertLimitsConfig()
    return Limits.of(limits.memory_fraction, limits.seconds)


def _promote(out_dir: Path, stage: Path) -> None:
    for entry in out_dir.iterdir():
        os.replace(entry, stage / entry.name)
    out_dir.rmdir()


def _keep_failed_log(log_path: Path, artifacts: ArtifactDir) -> None:
    """Keep the failing run's log (every strategy's part) next to the last good artifacts, which stay
    untouched. Appended: when the orchestrator re-exports and converts again, earlier parts stay."""
    if not log_path.exists():
        return
    export = artifacts.read_if_any(ExportRecord)
    made_by = f"{export.exporter} export, opset {export.opset}" if export else "the ONNX file"
    with (artifacts.root / FAILED_LOG).open("a") as kept:
        kept.write(f"\n########## convert-tf on {made_by}, {time.strftime('%Y-%m-%d %H:%M:%S')} ##########\n")
        kept.write(log_path.read_text(errors="replace"))


def _all_failed(attempts: list[Attempt], log: Path) -> str:
    """One line: what was tried, the failure that names a node (the most telling one, else the last), what each
    other converter made of the model, and what to try. The orchestrator adds the node's PyTorch module."""
    errors = [a for a in attempts if a.error]
    named = next((a for a in errors if "on node '" in a.error), errors[-1] if errors else None)
    cause = named.error.split("; full log:")[0] if named else "no strategy was tried"
    tried = ", ".join(a.strategy for a in attempts)
    return (f"every conversion strategy failed ({tried}); the cause: {cause}{_other_converters(attempts, named)}; try another "
            f"exporter or opset in the config (exporter: torchscript, opset: 17), or replace that node's parameters with "
            f"onnx2tf's parameter-replacement file; every attempt's log: {log}")


def _other_converters(attempts: list[Attempt], named: Attempt | None) -> str:
    """Whether the converters other than the one quoted handle the model: not available, or failed too (where)."""
    if named is None or named.converter is None:
        return ""
    last: dict[str, Attempt] = {}
    for attempt in attempts:
        if attempt.converter and attempt.converter != named.converter:
            last[attempt.converter] = attempt
    if not last:
        return f"; no other converter than {named.converter} was tried"
    said = [a.error.split("; full log:")[0] if " is not available" in (a.error or "")
            else f"{converter} fails on it too ({(a.error or '').split('; full log:')[0]})" for converter, a in last.items()]
    return "; " + "; ".join(said)


def _unavailable_notes(listed: list[Strategy]) -> list[str]:
    """A converter the strategy list holds but this machine cannot run, said once (it was not tried)."""
    names = dict.fromkeys(s.converter for s in listed)
    return [f"{why}: it cannot stand in when another converter fails or is caught wrong" for why in (get_converter(n).available() for n in names) if why]


def _other_converter_note(attempts: list[Attempt]) -> list[str]:
    """When a converter made the files after another failed, say which failed where and which made them."""
    made = attempts[-1]
    failed = [a for a in attempts[:-1] if a.converter and a.converter != made.converter and a.error]
    if not failed:
        return []
    named = next((a for a in failed if "on node '" in a.error), failed[-1])
    return [f"{named.converter} failed ({named.error.split('; full log:')[0][:300]}); {made.converter} converted the model "
            f"(strategy '{made.strategy}'): its files are shipped and audited like any other"]


def _reference_outputs(artifacts: ArtifactDir) -> dict[str, np.ndarray]:
    path = artifacts.require(artifacts.output_file("onnxruntime"), "validate")
    return shared_inputs.load_npz(path)


def bind(
    result: ConversionResult, specs: list[TensorSpec], output_names: list[str],
    reference: dict[str, np.ndarray], first_feed: shared_inputs.Feed,
) -> TFModelIO:
    """Match TF inputs/outputs to ONNX ones by position and decide each layout."""
    _check_counts(result, specs, output_names)
    keep = set(result.options.keep_nchw_inputs)
    inputs = [
        TensorBinding(spec.name, tf.name, i, decide(spec.shape, tf.shape, prefer_channel_last=spec.name not in keep))
        for i, (spec, tf) in enumerate(zip(specs, result.inputs))
    ]
    check_still_dynamic(specs, inputs, result.inputs)
    outputs = [
        TensorBinding(name, tf.name, i, decide(tuple(reference[name].shape[1:]), tf.shape, prefer_channel_last=True))
        for i, (name, tf) in enumerate(zip(output_names, result.outputs))
    ]
    io = TFModelIO(inputs, outputs)
    if any(b.layout.ambiguous for b in outputs):
        io = _probe_outputs(result, io, specs, reference, first_feed)
    return io


def check_still_dynamic(specs: list[TensorSpec], bindings: list[TensorBinding], tf_inputs: list) -> None:
    """Each axis the config keeps dynamic must be None in the converted model's input: never a silently
    static model (this strategy failed; the next one gets its turn)."""
    fixed = []
    for spec, binding, tf in zip(specs, bindings, tf_inputs):
        for axis, name in sorted(spec.dynamic.items()):
            at = binding.layout.perm.index(axis) if binding.layout.perm else axis
            if at < len(tf.shape) and tf.shape[at] is not None:
                fixed.append(f"input '{spec.name}' axis {axis} ('{name}') is fixed at {tf.shape[at]} in the TF model")
    if fixed:
        raise ConversionError(f"the conversion came out static where the config asks for dynamic: {'; '.join(fixed)}")


def _check_counts(result: ConversionResult, specs: list[TensorSpec], output_names: list[str]) -> None:
    if len(result.inputs) != len(specs) or len(result.outputs) != len(output_names):
        raise ConversionError(
            f"the converted model has {len(result.inputs)} inputs and {len(result.outputs)} outputs, "
            f"the ONNX model {len(specs)} and {len(output_names)}; see convert.log"
        )


def _probe_outputs(result: ConversionResult, io: TFModelIO, specs, reference, first_feed) -> TFModelIO:
    """Resolve shape-ambiguous output layouts by comparing against ONNX Runtime on the first sample."""
    raw_io = TFModelIO(io.inputs, [dataclasses.replace(b, layout=Layout(None, "probe")) for b in io.outputs])
    with wrap(TFSavedModelRunner(result.saved_model, raw_io, specs, [b.name for b in io.outputs])) as runner:
        raw = runner.infer(first_feed)
    outputs = []
    for binding in io.outputs:
        if binding.layout.ambiguous:
            fits = candidates(tuple(reference[binding.name].shape[1:]), tuple(raw[binding.name].shape))
            binding = dataclasses.replace(binding, layout=resolve_by_probe(reference[binding.name][0], raw[binding.name], fits))
        outputs.append(binding)
    return TFModelIO(io.inputs, outputs)


def _record(result: ConversionResult, io: TFModelIO, seconds: float, strategy: Strategy, attempts: list[Attempt],
            tf_lint: LintRecord) -> ConvertRecord:
    formats = {"tf_saved_model": result.saved_model, "keras": result.keras, **{f"tflite_{p}": f for p, f in result.tflite.items()}}
    return ConvertRecord(
        converter=result.converter, version=result.version,
        options={k: (str(v) if isinstance(v, Path) else v) for k, v in dataclasses.asdict(result.options).items()},
        seconds=round(seconds, 3), strategy=strategy.name, attempts=attempts,
        models={fmt: path.name for fmt, path in formats.items() if path}, io=io,
        ambiguous_layouts=[b.name for b in io.inputs + io.outputs if b.layout.ambiguous],
        layers=None,  # built on request since the layer model left the conversion (convert/layer_model.py)
        notes=result.notes, tf_lint=tf_lint, tf_layers=result.tf_layers, made_by=dict(result.made_by),
    )
