"""Stage 4, audit: every backend on the same inputs, compared with the reference.

The reference is PyTorch, or ONNX Runtime on the ONNX route. Outputs the
validate stage already computed on the same inputs are reused, not rerun.
Writes outputs/<backend>.npz and audit.json.
"""
from __future__ import annotations

import time

from rich.progress import Progress

from pipeline import inputs as shared_inputs
from pipeline.artifacts import ArtifactDir, sha256, write_json
from pipeline.backends import available_tf_backends, make_runner
from pipeline.compare import RunResults, Tolerance, compare, run_all
from pipeline.config import Source
from pipeline.console import capture_output, console
from pipeline.inputs import TensorSpec


def run(source: Source, artifacts: ArtifactDir, samples: int | None = None) -> dict:
    start = time.perf_counter()
    export = artifacts.read_record("export")
    convert = artifacts.read_record("convert")
    if samples is not None:
        _regenerate_inputs(artifacts, export, samples)
    feeds = shared_inputs.feeds(shared_inputs.load_npz(artifacts.require(artifacts.inputs, "export")))
    reference = export["reference"]
    backends = [reference] + (["onnxruntime"] if reference == "pytorch" else []) + available_tf_backends(convert)
    results, reused = _reuse_validated(artifacts, backends)
    to_run = [b for b in backends if b not in results]
    results.update(_run(to_run, source, artifacts, export, convert, feeds))
    comparisons = compare(results, reference, [b for b in backends if b != reference], _overrides(source))
    record = {
        "reference": reference, "backends": backends, "samples": len(feeds), "reused_outputs": reused,
        "inputs_sha256": sha256(artifacts.inputs), "comparisons": [c.to_json() for c in comparisons],
        "verdict": "pass" if all(comparisons) else "fail", "seconds": round(time.perf_counter() - start, 3),
    }
    with artifacts.staging() as stage:
        (stage / "outputs").mkdir()
        for backend in to_run:
            shared_inputs.save_npz(stage / "outputs" / f"{backend}.npz", results[backend])
        write_json(stage / "audit.json", record)
    return record


def _regenerate_inputs(artifacts: ArtifactDir, export: dict, samples: int) -> None:
    specs = [TensorSpec.from_json(raw) for raw in export["inputs"]]
    arrays = shared_inputs.generate(specs, samples, export.get("seed", 0))
    with artifacts.staging() as stage:
        shared_inputs.save_npz(stage / "inputs.npz", arrays)


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


def _run(backends: list[str], source: Source, artifacts: ArtifactDir, export: dict, convert: dict, feeds: list) -> RunResults:
    runners = [make_runner(b, source, artifacts, export, convert) for b in backends]
    # TF and LiteRT print C++ log lines while loading; they go to audit.log, not the terminal.
    with capture_output(artifacts.root / "audit.log"), Progress(console=console, transient=True) as progress:
        task = progress.add_task("running backends", total=len(runners) * len(feeds))
        return run_all(runners, feeds, on_sample=lambda name, i: progress.update(task, advance=1, description=f"running {name}"))


def _overrides(source: Source) -> dict[str, Tolerance]:
    if source.config is None:
        return {}
    return {key: Tolerance(t.atol, t.rtol) for key, t in source.config.tolerances.items()}
