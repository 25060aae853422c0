"""Stage 4, audit: every backend on the same inputs, compared with the reference.

The reference is PyTorch, or ONNX Runtime on the ONNX route. Outputs the validate
stage already computed on the same inputs are reused, not rerun. When a comparison
fails (or with --layers), intermediate tensors are compared layer by layer and the
first divergence is localized. Writes outputs/<backend>.npz and audit.json.
"""
from __future__ import annotations

import time
from pathlib import Path

from rich.progress import Progress

from pipeline import inputs as shared_inputs
from pipeline.artifacts.folder import ArtifactDir, sha256, write_json
from pipeline.runners.factory import available_tf_backends, make_runner
from pipeline.audit.compare import RunResults, Tolerance, compare, not_run, overall_verdict, run_all, tolerance_for
from pipeline.config import Source
from pipeline.console import capture_output, console, stage_status
from pipeline.errors import RunnerError
from pipeline.inputs import TensorSpec


def run(source: Source, artifacts: ArtifactDir, samples: int | None = None, inputs_file: Path | None = None,
        layers: bool = False) -> dict:
    start = time.perf_counter()
    export = artifacts.read_record("export")
    convert = artifacts.read_record("convert")
    _prepare_inputs(artifacts, export, samples, inputs_file)
    feeds = shared_inputs.feeds(shared_inputs.load_npz(artifacts.require(artifacts.inputs, "export")))
    reference = export["reference"]
    backends = [reference] + (["onnxruntime"] if reference == "pytorch" else []) + available_tf_backends(convert)
    results, reused = _reuse_validated(artifacts, backends)
    to_run = [b for b in backends if b not in results]
    fresh, broken = _run(to_run, source, artifacts, export, convert, feeds)
    results.update(fresh)
    overrides = _overrides(source)
    candidates = [b for b in backends if b != reference and b not in broken]
    comparisons = compare(results, reference, candidates, overrides, _classification(source))
    comparisons += [not_run(reference, backend, output, tolerance_for(backend, overrides), reason)
                    for backend, reason in broken.items() for output in results[reference]]
    verdict = overall_verdict([c.verdict for c in comparisons])
    failed = verdict == "fail"
    signal = _signal(source, artifacts, export, feeds, comparisons)
    record = {
        "reference": reference, "backends": backends, "samples": len(feeds), "reused_outputs": reused,
        "sample_labels": shared_inputs.sample_labels(len(feeds), edge_cases=True), "inputs_sha256": sha256(artifacts.inputs),
        "comparisons": [c.to_json() for c in comparisons],
        "histograms": [{"reference": c.reference, "candidate": c.candidate, "output": c.output, **c.histogram}
                       for c in comparisons if c.histogram],
        "verdict": verdict, "verdict_reasons": _reasons(comparisons, signal), "signal": signal,
        **_layer_by_layer(source, artifacts, export, convert, feeds, overrides, run_it=layers or failed),
        "seconds": round(time.perf_counter() - start, 3),
    }
    with artifacts.staging() as stage:
        (stage / "outputs").mkdir()
        for backend in fresh:
            shared_inputs.save_npz(stage / "outputs" / f"{backend}.npz", results[backend])
        write_json(stage / "audit.json", record)
    return record


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


def _signal(source: Source, artifacts: ArtifactDir, export: dict, feeds: list, comparisons: list) -> dict | None:
    """For an output inconclusive for lack of signal: the node where it vanished or blew up."""
    no_signal = ("magnitude", "NaN")
    weak = next((c for c in comparisons if c.verdict == "inconclusive" and any(k in (c.reason or "") for k in no_signal)), None)
    if weak is None:
        return None
    import onnx

    from pipeline.audit.signal_trace import trace
    from pipeline.model.context import ModelContext
    from pipeline.model.torch_model import reference_model

    specs = [TensorSpec.from_json(raw) for raw in export["inputs"]]
    module_of = ModelContext(onnx.load(str(artifacts.onnx)), reference_model(source, export)).module_namer()
    with capture_output(artifacts.root / "audit.log"):
        return trace(artifacts.onnx, specs, feeds[0], weak.output, module_of)


def _prepare_inputs(artifacts: ArtifactDir, export: dict, samples: int | None, inputs_file: Path | None) -> None:
    """Replace inputs.npz with a user's data or another sample count (edge cases always appended)."""
    if samples is None and inputs_file is None:
        return
    specs = [TensorSpec.from_json(raw) for raw in export["inputs"]]
    if inputs_file is not None:
        arrays = shared_inputs.load_user_inputs(inputs_file, specs)
    else:
        arrays = shared_inputs.generate(specs, samples, export.get("seed", 0))
    with artifacts.staging() as stage:
        shared_inputs.save_npz(stage / "inputs.npz", shared_inputs.with_edge_cases(arrays, specs))


def _reuse_validated(artifacts: ArtifactDir, backends: list[str]) -> tuple[RunResults, list[str]]:
    validate = artifacts.read_record_if_any("validate")
    if not validate or validate.get("inputs_sha256") != sha256(artifacts.inputs):
        return {}, []
    results = {}
    for backend in validate["backends"]:
        path = artifacts.output_file(backend)
        if backend in backends and path.exists():
            results[backend] = shared_inputs.load_npz(path)
    return results, sorted(results)


def _run(backends: list[str], source: Source, artifacts: ArtifactDir, export: dict, convert: dict,
         feeds: list) -> tuple[RunResults, dict[str, str]]:
    """Run each backend; a candidate that cannot run (say, TFLite with Select TF ops and no Flex
    delegate) is recorded and compared as a failure, while the others are still audited."""
    runners = [make_runner(b, source, artifacts, export, convert) for b in backends]
    results: RunResults = {}
    broken: dict[str, str] = {}
    # TF and LiteRT print C++ log lines while loading; they go to audit.log, not the terminal.
    with capture_output(artifacts.root / "audit.log"), Progress(console=console, transient=True) as progress:
        task = progress.add_task("running backends", total=len(runners) * len(feeds))
        for runner in runners:
            try:
                results.update(run_all([runner], feeds, on_sample=lambda name, i: progress.update(
                    task, advance=1, description=f"running {name}")))
            except RunnerError as exc:
                if runner.name == export["reference"]:
                    raise
                broken[runner.name] = str(exc)
    return results, broken


def _layer_by_layer(source, artifacts, export, convert, feeds, overrides, run_it: bool) -> dict:
    if not run_it:
        return {"layers": {"ran": False, "reason": "every comparison passed; run with --layers to compare intermediates",
                           "pairs": []}, "localization": None}
    from pipeline.audit.layer_by_layer import run_layers

    with stage_status("comparing intermediate tensors layer by layer"), capture_output(artifacts.root / "audit.log"):
        return run_layers(source, artifacts, export, convert, feeds, overrides)


def _overrides(source: Source) -> dict[str, Tolerance]:
    if source.config is None:
        return {}
    return {key: Tolerance(t.atol, t.rtol) for key, t in source.config.tolerances.items()}


def _classification(source: Source) -> set[str] | None:
    if source.config is None or source.config.classification_outputs == "auto":
        return None
    return set(source.config.classification_outputs)
