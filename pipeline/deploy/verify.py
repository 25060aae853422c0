"""`python -m pipeline verify ARTIFACT_DIR`: do the shipped files still hold?

1. Every file the manifest lists is re-hashed; a missing or changed file is named.
2. Every shipped model (ONNX, SavedModel, Keras, TFLite) is rerun on the saved inputs.npz.
   Its outputs must reproduce the ones the audit judged (outputs/<backend>.npz) within the
   audit's tolerance for its precision, so the audit's verdict still holds; its error against
   the saved reference outputs is shown. PyTorch is not needed.
A model whose bytes changed is not run (a corrupt flatbuffer can crash the interpreter).
"""
from __future__ import annotations

import json
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from pipeline import inputs as shared_inputs
from pipeline import shapes
from pipeline.artifacts.folder import sha256
from pipeline.deploy.manifest import MANIFEST, artifact_root, digest, load
from pipeline.deploy.rerun import runner
from pipeline.errors import RunnerError


@dataclass(frozen=True)
class ModelCheck:
    """One shipped model rerun against the saved reference outputs."""

    backend: str
    path: str
    verdict: str  # "pass" | "fail" | "skipped"
    reason: str | None = None
    max_abs: dict[str, float] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.verdict != "fail"


@dataclass(frozen=True)
class VerifyResult:
    changed: list[str]  # one line per missing or changed file
    checks: list[ModelCheck]

    @property
    def passed(self) -> bool:
        return not self.changed and all(c.ok for c in self.checks)


def verify(root: Path) -> VerifyResult:
    manifest = load(root)
    changed = changed_files(root, manifest["artifacts"])
    if manifest.get("digest") != digest(manifest):
        changed.insert(0, f"{MANIFEST}: its content does not match its digest (edited after the run)")
    changed_paths = {line.split(":")[0] for line in changed}
    if changed_paths & {"inputs.npz", f"outputs/{manifest['reference']}.npz", "convert.json", "export.json", "audit.json"}:
        return VerifyResult(changed, [ModelCheck(m["backend"], m["path"], "fail", "not rerun: the saved inputs, "
                                                  "reference outputs or records changed") for m in manifest["models"]])
    return VerifyResult(changed, [check_model(root, manifest, m, changed_paths) for m in manifest["models"]])


def changed_files(root: Path, listed: list[dict]) -> list[str]:
    lines = []
    for entry in listed:
        path = root / entry["path"]
        if not path.is_file():
            lines.append(f"{entry['path']}: missing")
        elif sha256(path) != entry["sha256"]:
            lines.append(f"{entry['path']}: sha256 differs from the manifest (the file changed since the run)")
    return lines


def check_model(root: Path, manifest: dict, model: dict, changed: set[str]) -> ModelCheck:
    backend, path = model["backend"], model["path"]
    if not model["shipped"]:
        return ModelCheck(backend, path, "skipped", f"not shipped: its audit verdict was {model['verdict']}")
    if any(p == path or p.startswith(f"{path}/") for p in changed):
        return ModelCheck(backend, path, "fail", "not rerun: its bytes changed")
    records = {stage: json.loads((root / f"{stage}.json").read_text()) for stage in ("export", "convert", "audit")}
    failures, max_abs = [], {}
    # A dynamic model is rerun at every shape the audit ran: the example's (inputs.npz), then each extra one.
    for sizes in [{}] + records["export"].get("shapes", []):
        inputs = root / (shapes.inputs_name(sizes) if sizes else "inputs.npz")
        where = f" at {shapes.describe(sizes, shapes.example_sizes(_specs(records)))}" if sizes else ""
        try:
            outputs = _run(root, backend, records, inputs)
        except RunnerError as exc:
            failures.append(f"{exc}{where}")
            continue
        reference = _reference(root, shapes.outputs_key(manifest["reference"], sizes))
        shape_failures, shape_max_abs = _judge(backend, outputs, reference, root / "outputs" / f"{shapes.outputs_key(backend, sizes)}.npz")
        failures += [f"{line}{where}" for line in shape_failures]
        max_abs.update({f"{name}{where}" if where else name: value for name, value in shape_max_abs.items()})
    if failures:
        return ModelCheck(backend, path, "fail", "; ".join(failures), max_abs)
    return ModelCheck(backend, path, "pass", None, max_abs)


def _specs(records: dict) -> list:
    return [shared_inputs.TensorSpec.from_json(raw) for raw in records["export"]["inputs"]]


def _run(root: Path, backend: str, records: dict, inputs: Path) -> dict[str, np.ndarray]:
    from pipeline.compare import run_all

    feeds = shared_inputs.feeds(shared_inputs.load_npz(inputs))
    return run_all([runner(root, backend, records)], feeds)[backend]


def _reference(root: Path, key: str) -> dict[str, np.ndarray]:
    return shared_inputs.load_npz(root / "outputs" / f"{key}.npz")


def _judge(backend: str, outputs: dict, reference: dict, saved_path: Path) -> tuple[list[str], dict[str, float]]:
    """The rerun must reproduce the outputs the audit judged (outputs/<backend>.npz), within the
    audit's tolerance for that precision; its error against the saved reference is reported."""
    from pipeline.compare import compare_arrays, tolerance_for

    saved = shared_inputs.load_npz(saved_path) if saved_path.exists() else reference
    tolerance = tolerance_for(backend)
    failures, max_abs = [], {}
    for name, ref in reference.items():
        against_reference = compare_arrays(ref, outputs.get(name), tolerance, ("reference", backend, name))
        max_abs[name] = against_reference.max_abs
        rerun = compare_arrays(saved[name], outputs.get(name), tolerance, ("audit", backend, name))
        if rerun.error or rerun.fraction_beyond_tol > 0:
            failures.append(f"'{name}': the rerun differs from the audited outputs "
                            f"({rerun.error or f'max_abs {rerun.max_abs:.3g}'})")
    return failures, max_abs


def lines(result: VerifyResult) -> list[str]:
    """What verify prints: each changed file, then one line per model."""
    out = [f"CHANGED {line}" for line in result.changed]
    for check in result.checks:
        detail = check.reason or ", ".join(f"'{k}' max_abs {v:.3g}" for k, v in check.max_abs.items())
        out.append(f"{check.verdict.upper():7} {check.backend} ({check.path}): {detail}")
    skipped = [c.path for c in result.checks if c.verdict == "skipped"]
    held = "every file and every shipped model holds" + (f" ({len(skipped)} not shipped: their audit did not pass)" if skipped else "")
    out.append("verify: " + (held if result.passed else "FAILED"))
    return out


def run_cli(root: Path) -> int:
    """Print the result; exit 0 only when every file and every shipped model holds."""
    from pipeline.console import capture_output
    from pipeline.errors import EXIT_AUDIT_FAILED, EXIT_PASS, UsageError

    if not root.is_dir():
        raise UsageError(f"{root}: not a folder; pass an artifact folder written by 'convert'")
    # TF and LiteRT print C++ log lines while loading; they go to a log outside the (maybe read-only) folder.
    with tempfile.TemporaryDirectory(prefix="verify-") as scratch, capture_output(Path(scratch) / "verify.log"):
        result = verify(root)
    for line in lines(result):
        print(line)
    return EXIT_PASS if result.passed else EXIT_AUDIT_FAILED


def main(argv: list[str] | None = None) -> int:
    """`make verify MODEL=...`: verify the artifact folder of a config name, .yaml or .onnx."""
    import argparse

    from pipeline.errors import PipelineError

    parser = argparse.ArgumentParser(prog="python -m pipeline.deploy.verify", description="verify MODEL's artifact folder")
    parser.add_argument("model", metavar="MODEL", help="config name, .yaml or .onnx (its artifact folder is verified)")
    parser.add_argument("--out", help="the artifact folder, when not artifacts/<name>")
    args = parser.parse_args(argv)
    try:
        return run_cli(artifact_root(args.model, args.out))
    except PipelineError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code


if __name__ == "__main__":
    sys.exit(main())
