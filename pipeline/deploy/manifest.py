"""manifest.json: what a run shipped, for the next team and for `verify`.

Every file in the artifact folder (logs and the manifest itself aside) with its size and
sha256; each model with its format, precision, signature and audit verdict; the
preprocessing; the versions of the stack; the config's sha256; the lint summary.
It is built only from the stage records, so it can be rewritten at any time.
"""
from __future__ import annotations

import hashlib
import json
from importlib import metadata
from pathlib import Path

import numpy as np

from pipeline.artifacts.folder import ArtifactDir, sha256, write_json
from pipeline.config import Source
from pipeline.deploy import int8

MANIFEST = "manifest.json"
SCHEMA = 1
VERSIONED = {
    "torch": "torch", "onnx": "onnx", "onnxruntime": "onnxruntime", "tensorflow": "tensorflow-cpu",
    "ai-edge-litert": "ai-edge-litert", "onnx2tf": "onnx2tf",
}
# Not shipped: run logs (machine paths, timings), the lock, and staging or hidden files.
SKIPPED_SUFFIXES = (".log",)
# The int8 calibration samples are provenance, not a deliverable (and can be large): their sha256
# is in `quantization`, the file stays in the artifact folder.
# profile.json (where the run's time went) differs on every run and is written after the manifest.
SKIPPED_FILES = (MANIFEST, "calibration.npz", "profile.json")
MODEL_FORMATS = {
    "onnxruntime": "onnx", "tf_saved_model": "tf_saved_model", "keras": "keras_v3", "keras_h5": "keras_h5",
}


def build(source: Source | None, artifacts: ArtifactDir) -> dict:
    """The manifest's content except the file list (written last, so it covers the model card)."""
    root = artifacts.root
    export, convert, audit = (_record(root, s) for s in ("export", "convert", "audit"))
    lint = _record_if_any(root, "lint")
    return {
        "schema": SCHEMA, "model": source.name if source else root.name, "route": export["route"],
        "reference": audit["reference"],
        "models": models(root, export, convert, audit),
        "signature": signature(root, export, convert, audit["reference"]),
        "dynamic": dynamic(export),
        "preprocessing": preprocessing(source),
        "quantization": _best_effort(int8.summary, root, export, convert, audit),
        "tflite": _best_effort(tflite, root, convert, audit),
        "versions": {name: _version(dist) for name, dist in VERSIONED.items()},
        "source": _source(source, export),
        "lint": {"passed": lint["passed"], "counts": lint["counts"]} if lint else None,
        "verdict": verdict(audit, lint),
    }


def _best_effort(section, *args) -> dict:
    """A section measured from the files (int8 cost, TFLite ops): its failure is recorded, not fatal,
    since the manifest must still list and hash what was shipped."""
    try:
        return section(*args)
    except Exception as exc:  # reading a flatbuffer or running LiteRT can raise anything; say what
        return {"error": f"{type(exc).__name__}: {str(exc).splitlines()[0][:200] if str(exc) else ''}"}


def write(root: Path, source: Source | None, content: dict) -> dict:
    path = root / MANIFEST
    write_json(path, {**content, "artifacts": files(root)})
    manifest = json.loads(path.read_text())  # the digest covers exactly what was written (NaN as null, ...)
    manifest["digest"] = digest(manifest)
    write_json(path, manifest)
    return manifest


def digest(manifest: dict) -> str:
    """sha256 of the manifest's canonical JSON without its own digest: a hand edit (a hash made to
    match a changed file) shows. Integrity, not authenticity: sign the package to prove who made it."""
    body = {k: v for k, v in manifest.items() if k != "digest"}
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


def files(root: Path) -> list[dict]:
    """Every shipped file, sorted by path, with format, size and sha256."""
    listed = []
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        relative = path.relative_to(root).as_posix()
        if _skipped(relative):
            continue
        listed.append({"path": relative, "format": file_format(relative), "size": path.stat().st_size,
                       "sha256": sha256(path)})
    return listed


def _skipped(relative: str) -> bool:
    parts = relative.split("/")
    return (relative in SKIPPED_FILES or relative.endswith(SKIPPED_SUFFIXES)
            or any(part.startswith(".") for part in parts))


def file_format(relative: str) -> str:
    name = relative.split("/")[-1]
    if relative.startswith("saved_model/"):
        return "tf_saved_model"
    if relative.startswith("outputs/"):
        return "reference_outputs" if name.startswith(("pytorch.", "onnxruntime.")) else "outputs"
    by_suffix = {".onnx": "onnx", ".keras": "keras_v3", ".h5": "keras_h5", ".tflite": "tflite", ".npz": "npz",
                 ".html": "report", ".md": "document"}
    if name == "layers.keras":
        return "layers_keras"
    if name.endswith(".json"):
        return "record"
    return next((fmt for suffix, fmt in by_suffix.items() if name.endswith(suffix)), "file")


def models(root: Path, export: dict, convert: dict, audit: dict) -> list[dict]:
    """Each converted model (and the ONNX file) with its audit verdict and errors."""
    from pipeline.compare import PRECISION

    paths = {"onnxruntime": "model.onnx", **convert["models"]}
    listed = []
    for backend, relative in paths.items():
        path = root / relative
        if not path.exists():
            continue
        outcome = backend_verdict(audit, backend)
        listed.append({
            "backend": backend, "path": relative, "format": MODEL_FORMATS.get(backend, "tflite"),
            "precision": "int8" if "int8" in backend else str(PRECISION.get(backend, "fp32")), "size": _size(path), "sha256": sha256(path),
            **({"made_by": convert["made_by"][backend]} if backend in convert.get("made_by", {}) else {}),
            **outcome,
        })
    return listed


def backend_verdict(audit: dict, backend: str) -> dict:
    """A backend's verdict over its outputs (fail beats inconclusive beats pass) and its reasons."""
    from pipeline.compare import overall_verdict

    mine = [c for c in audit["comparisons"] if c["candidate"] == backend and c["reference"] == audit["reference"]]
    if backend == audit["reference"]:  # the ONNX route: model.onnx is what the others are measured against
        return {"verdict": "reference", "errors": [], "shipped": True}
    if not mine:
        return {"verdict": "not audited", "errors": ["not run by the audit; see 'quantization' for its measured error"
                                                     if "int8" in backend else "not run by the audit"], "shipped": False}
    verdicts = [c.get("verdict", "pass" if c["passed"] else "fail") for c in mine]
    errors = [f"'{c['output']}': {c.get('reason') or c.get('error')}" for c in mine if c.get("verdict") != "pass"]
    overall = overall_verdict(verdicts)
    return {"verdict": overall, "errors": errors, "shipped": overall == "pass"}


def signature(root: Path, export: dict, convert: dict, reference: str) -> dict:
    """Inputs and outputs as the reference sees them, with each TF model's name and layout."""
    io = convert["io"]
    tf_in = {b["name"]: b for b in io["inputs"]}
    tf_out = {b["name"]: b for b in io["outputs"]}
    inputs = [{"name": spec["name"], "shape": spec["shape"], "dtype": spec["dtype"], **_tf_side(tf_in.get(spec["name"]), spec["shape"])}
              for spec in export["inputs"]]
    outputs = []
    for name, array in _reference_arrays(root, reference).items():
        shape = list(array.shape[1:])
        outputs.append({"name": name, "shape": shape, "dtype": str(array.dtype), **_tf_side(tf_out.get(name), shape)})
    return {"inputs": inputs, "outputs": outputs}


def dynamic(export: dict) -> dict | None:
    """The dimensions that stay dynamic in every shipped model: per input, axis -> name; each name's
    constraints; and the shapes the audit ran (and verify reruns). None for a static model."""
    from pipeline import shapes
    from pipeline.inputs import TensorSpec

    specs = [TensorSpec.from_json(raw) for raw in export["inputs"]]
    if not shapes.is_dynamic(specs):
        return None
    example = shapes.example_sizes(specs)
    return {
        "inputs": {s.name: {str(a): n for a, n in sorted(s.dynamic.items())} for s in specs if s.dynamic},
        "dims": {name: {**shapes.constraint_of(export.get("dims", {}), name).model_dump(), "example": size}
                 for name, size in example.items()},
        "audited_shapes": [example] + [{**example, **sizes} for sizes in export.get("shapes", [])],
    }


def _tf_side(binding: dict | None, shape: list[int]) -> dict:
    if binding is None:
        return {"tf_name": None, "tf_shape": None, "layout": None}
    perm = binding.get("perm")
    tf_shape = [shape[i] for i in perm] if perm and len(perm) == len(shape) else list(shape)
    return {"tf_name": binding["tf_name"], "tf_shape": tf_shape, "layout": binding["layout"],
            "layout_decided_by": binding.get("decided_by")}


def _reference_arrays(root: Path, reference: str) -> dict[str, np.ndarray]:
    path = root / "outputs" / f"{reference}.npz"
    if not path.exists():
        return {}
    with np.load(path, allow_pickle=False) as archive:
        return {name: archive[name] for name in archive.files}


def tflite(root: Path, convert: dict, audit: dict) -> dict:
    """Per .tflite file: the ops it needs and whether the standard interpreter runs it; and, when
    Select TF ops were avoided, each approximation with its measured error."""
    from pipeline.converters.tflite_ops import read_ops

    ops = {path.name: read_ops(path).to_json() for path in sorted(root.glob("*.tflite"))}
    record_path = root / "tflite_builtin.json"
    route = json.loads(record_path.read_text()) if record_path.exists() else None
    if route:
        backends = {file: backend for backend, file in convert["models"].items()}
        route["measured"] = {file: _approximation_error(root, backends.get(file), audit["reference"])
                             for file, entry in route["files"].items() if entry["standard"]}
    cure_path = root / "fp16_cure.json"  # the fp16 cure (pipeline/convert/fp16_cure.py): what changed, errors before/after
    cure = json.loads(cure_path.read_text()) if cure_path.exists() else None
    return {"files": ops, "builtin_route": route, "fp16_cure": cure}


def _approximation_error(root: Path, backend: str | None, reference: str) -> dict:
    """The builtin file's error against the reference, and against the SavedModel (the exact ops)."""
    outputs = _reference_arrays(root, backend) if backend else {}
    if not outputs:
        return {"error": "not audited"}
    measured = {}
    for against in (reference, "tf_saved_model"):
        ref = _reference_arrays(root, against)
        measured[f"vs_{against}"] = {name: int8.metrics(array, outputs[name]) for name, array in ref.items() if name in outputs}
    return measured


def preprocessing(source: Source | None) -> dict | None:
    config = source.config if source else None
    preprocess = getattr(config, "preprocess", None) if config else None
    return preprocess.model_dump() if preprocess is not None else None


def verdict(audit: dict, lint: dict | None) -> dict:
    from pipeline.compare import overall_verdict

    lint_failed = lint is not None and not lint["passed"]
    reasons = list(audit.get("verdict_reasons", [])) + ([f"lint: {lint['counts']['error']} error finding(s)"] if lint_failed else [])
    backends = sorted({c["candidate"] for c in audit["comparisons"]})
    return {
        "overall": overall_verdict([audit["verdict"]] + (["fail"] if lint_failed else [])),
        "reasons": reasons,
        "per_backend": {b: backend_verdict(audit, b) for b in backends},
    }


def _source(source: Source | None, export: dict) -> dict:
    if source is None or not source.path.is_file():
        return {"kind": export["route"], "path": export.get("source"), "sha256": None}
    return {"kind": source.kind, "path": source.path.name, "sha256": sha256(source.path)}


def _record(root: Path, stage: str) -> dict:
    path = root / f"{stage}.json"
    if not path.exists():
        from pipeline.errors import ArtifactError

        raise ArtifactError(f"{path}: missing; run 'python -m pipeline convert MODEL' first")
    return json.loads(path.read_text())


def _record_if_any(root: Path, stage: str) -> dict | None:
    path = root / f"{stage}.json"
    return json.loads(path.read_text()) if path.exists() else None


def _size(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file()) if path.is_dir() else path.stat().st_size


def _version(dist: str) -> str | None:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return None


def load(root: Path) -> dict:
    """The manifest of an artifact folder; ArtifactError when there is none."""
    path = root / MANIFEST
    if not path.is_file():
        from pipeline.errors import ArtifactError

        raise ArtifactError(f"{path}: missing; run 'python -m pipeline convert MODEL' (or 'report') to write it")
    return json.loads(path.read_text())


def artifact_root(model: str, out: str | None) -> Path:
    """MODEL's artifact folder (where its manifest is): --out when given, else artifacts/<name>."""
    from pipeline.artifacts.folder import ArtifactDir
    from pipeline.config import resolve_source

    if out:
        return Path(out).resolve()
    return ArtifactDir.for_model(resolve_source(model).name, None).root
