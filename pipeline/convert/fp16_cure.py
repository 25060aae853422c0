"""The fp16 cure: constants float16 flushes to zero are raised to its smallest normal value, and the cured
TFLite fp16 file replaces model_float16.tflite only when it is better.

The fp16_underflow lint finds them (a LayerNorm epsilon of 1e-12, HF's default, is stored as 0, and
Rsqrt(0) is Inf on a zero-variance row). Its warnings have a known cure: the constant raised to
6.1035e-05 (float16's smallest normal, exact in float32 and float16), which float16 holds. Only epsilons
are cured: a norm's `epsilon`, or the constant an Add, Sum, Max or Clip applies before Sqrt, Log, a
denominator...; a constant Div denominator of 1e-12 is a scale, and raising it would change the model.
Only that constant changes; the float32 files keep the model's own value.

The cured file is made without a second conversion where it can be: the flushed epsilons are raised in
model_float16.tflite itself (fp16_patch.py, milliseconds). The cured ONNX copy (model.fp16_cured.onnx, always
written: the fp16 storage reference runs it) goes through the converter again for the fp16 file, as it did
for every cure before (16-28 s of a zoo model's run), when that cannot cure the file: a flushed epsilon it
cannot raise alone, an error, a patched file that still holds NaN or Inf, or nothing found where the float32
file's ops did not align (the flushed values were unknown) or the file holds NaN or Inf. When it found
nothing in an aligned file that holds no NaN or Inf on the audit's samples, nothing is converted.

Overflowing constants (fp16_overflow) get no cure file: TensorFlow's converter already clamps them to
+-65504 when it stores float16 (measured, TF 2.21), which is the cure's value.

The cured file is run on the audit's inputs beside the uncured one; it is shipped only when it holds no
NaN or Inf where the float32 reference has none, and its largest error against that reference is no
larger. Either way fp16_cure.json records what changed (constant, node, module, old and new value) and
both errors.
"""
from __future__ import annotations

import dataclasses
import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
from onnx import helper, numpy_helper

from pipeline.errors import first_line
from pipeline.lint import Finding
from pipeline.lint.fp16 import FP16_TINY, FP16_ZERO_BELOW

CURED_ONNX = "model.fp16_cured.onnx"
RECORD = "fp16_cure.json"
UNCURED = "model_float16_uncured.tflite"
CURED_RULES = ("fp16_underflow",)
FILES = (RECORD, CURED_ONNX, UNCURED)
EPSILON_READERS = ("Add", "Sum", "Max", "Clip")  # nodes whose small constant input is an epsilon (fp16_underflow's guards)  # what a cure leaves in the folder (a repair's winner replaces them)


@dataclass(frozen=True)
class Change:
    """One constant the cure changed."""

    node: str
    op_type: str
    module: str | None
    constant: str  # "epsilon" (the attribute) or the input tensor's name
    old: float  # the value float16 flushed to 0 (the smallest in magnitude, for a tensor)
    new: float
    values: int  # how many values of the constant changed

    def describe(self) -> str:
        where = f" ({self.module})" if self.module else ""
        return f"{self.op_type} '{self.node}'{where} {self.constant}: {self.old:.3g} -> {self.new:.4g}"


def curable(findings: list[Finding]) -> list[Finding]:
    """The findings the cure knows how to mend: constants float16 stores as 0 (warnings of fp16_underflow)."""
    return [f for f in findings if f.rule in CURED_RULES and f.severity == "warning"]


def cure_onnx(onnx_path: Path, findings: list[Finding], out_path: Path) -> list[Change]:
    """Write a copy of onnx_path with each cured constant raised to float16's smallest normal value
    (sign kept); returns what changed (nothing written when nothing did). Findings name nodes of onnx_path."""
    model = onnx.load(str(onnx_path))
    nodes = {node.name: node for node in model.graph.node}
    changes: list[Change] = []
    for finding in curable(findings):
        node = nodes.get(finding.node)
        if node is not None:
            changes += _cure_node(model, node, finding.module)
    if changes:
        onnx.checker.check_model(model)
        onnx.save(model, str(out_path))
    return changes


def _zeroed(values: np.ndarray) -> np.ndarray:
    magnitude = np.abs(values.astype(np.float64))
    return (magnitude > 0) & (magnitude < FP16_ZERO_BELOW)


def _cure_node(model: onnx.ModelProto, node: onnx.NodeProto, module: str | None) -> list[Change]:
    changes = []
    for attribute in node.attribute:
        if attribute.name == "epsilon" and _zeroed(np.asarray(attribute.f)).any():
            changes.append(Change(node.name, node.op_type, module, "epsilon", float(attribute.f), FP16_TINY, 1))
            attribute.f = FP16_TINY
    if node.op_type not in EPSILON_READERS:
        return changes  # a constant Div denominator of 1e-12 is a scale, not an epsilon: raising it is no cure
    constants = _constants(model)
    for index, name in enumerate(node.input):
        value = constants.get(name)
        if value is None or value.dtype.kind != "f" or not _zeroed(value).any():
            continue
        zeroed = _zeroed(value)
        cured = np.where(zeroed, np.sign(value) * FP16_TINY, value).astype(value.dtype)
        # A new initializer for the cured readers: another reader of the same constant keeps its value. Two guarded
        # readers of one constant (SwiftFormer's two LayerNorm-style Adds) share the one cured copy.
        cured_name = f"{name}__fp16_cured"
        if cured_name not in {init.name for init in model.graph.initializer}:
            model.graph.initializer.append(numpy_helper.from_array(cured, cured_name))
        node.input[index] = cured_name
        old = float(value[zeroed].flat[np.argmin(np.abs(value[zeroed]))])
        changes.append(Change(node.name, node.op_type, module, name, old, FP16_TINY, int(zeroed.sum())))
    return changes


def _constants(model: onnx.ModelProto) -> dict[str, np.ndarray]:
    values = {init.name: numpy_helper.to_array(init) for init in model.graph.initializer}
    for node in model.graph.node:
        if node.op_type == "Constant" and node.attribute:
            value = helper.get_attribute_value(node.attribute[0])
            if isinstance(value, onnx.TensorProto):
                values[node.output[0]] = numpy_helper.to_array(value)
    return values


@dataclass(frozen=True)
class Errors:
    """A TFLite fp16 file's outputs on the audit inputs against the float32 reference."""

    max_abs: float  # inf when a sample holds NaN or Inf
    non_finite_samples: list[int]  # samples with NaN or Inf where the reference is finite

    def to_json(self) -> dict:
        return {"max_abs": self.max_abs if np.isfinite(self.max_abs) else None,
                "non_finite_samples": self.non_finite_samples}


def measure(outputs: list[dict[str, np.ndarray]], reference: dict[str, np.ndarray]) -> Errors:
    """`outputs` one dict per sample; `reference` stacked over samples (the convert stage's layout)."""
    worst, broken = 0.0, []
    for i, got in enumerate(outputs):
        for name, expected in reference.items():
            want, have = expected[i].astype(np.float64), np.asarray(got[name], dtype=np.float64).reshape(expected[i].shape)
            if (~np.isfinite(have) & np.isfinite(want)).any():
                broken.append(i)
                worst = float("inf")
                continue
            both = np.isfinite(want) & np.isfinite(have)
            if both.any():
                worst = max(worst, float(np.abs(have[both] - want[both]).max()))
    return Errors(worst, sorted(set(broken)))


def better(before: Errors, after: Errors) -> tuple[bool, str]:
    """Whether the cured file ships, and why (or why not)."""
    if after.non_finite_samples:
        return False, f"the cured file still holds NaN or Inf on sample(s) {after.non_finite_samples}"
    if not after.max_abs <= before.max_abs:
        return False, f"the cured file's error {after.max_abs:.3g} is larger than the uncured file's {before.max_abs:.3g}"
    return True, "no NaN or Inf where the reference has none, and an error no larger than the uncured file's"


PATCHED = "patched in the fp16 file"  # fp16_patch.py: no second conversion
CONVERTED = "converted again"  # the cured ONNX copy through the converter


@dataclass
class CureJob:
    """What the convert stage hands the cure: the file it converted, the stage folder, how to convert again
    (a function of (onnx_path, out_dir) -> ConversionResult) and how to run a .tflite file on the audit inputs."""

    onnx_path: Path
    stage: Path
    findings: list[Finding]
    convert_fp16: object  # (onnx_path, out_dir) -> ConversionResult
    run_tflite: object  # (tflite_path) -> list of per-sample output dicts
    reference: dict[str, np.ndarray]
    reference_name: str
    fp32: Path | None = None  # the shipped TFLite fp32 file: the float32 values of the flushed constants


def run(job: CureJob) -> list[str]:
    """Cure, measure, swap if better; writes fp16_cure.json in the stage folder. Notes for convert.json."""
    shipped = job.stage / "model_float16.tflite"
    try:
        changes = cure_onnx(job.onnx_path, job.findings, job.stage / CURED_ONNX)
    except (onnx.checker.ValidationError, ValueError, OSError) as exc:  # the uncured file ships, and the note says why
        return [f"fp16 cure not made ({type(exc).__name__}: {first_line(exc, 200)}); the uncured fp16 file ships"]
    if not changes or not shipped.exists():
        return []
    record = {"onnx": CURED_ONNX, "changes": [dataclasses.asdict(c) for c in changes], "reference": job.reference_name,
              "method": None, "patches": [], "patch_note": None, "before": None, "after": None, "shipped": False,
              "reason": "", "uncured_file": None}
    work = job.stage / ".fp16_cure"
    try:
        before = measure(job.run_tflite(shipped), job.reference)
        record["before"] = before.to_json()
        patched = _patched(job, work, record)
        cured = patched.cured or (None if patched.nothing_to_cure and not before.non_finite_samples
                                  else _converted(job, work, record))
        if cured is not None:
            _ship_if_better(job, before, *cured, record)
        elif patched.nothing_to_cure:
            record["reason"] = f"{record['patch_note']}, and it holds no NaN or Inf on the audit's samples: no second conversion"
    except Exception as exc:  # the converter and the interpreter raise many types; the uncured file stays, and the record says why
        record["reason"] = f"the cure was not completed ({type(exc).__name__}: {first_line(exc, 200)})"
    finally:
        shutil.rmtree(work, ignore_errors=True)
    (job.stage / RECORD).write_text(json.dumps(record, indent=2) + "\n")
    return [note(record)]


def _ship_if_better(job: CureJob, before: Errors, candidate: Path, after: Errors, record: dict) -> None:
    ok, why = better(before, after)
    record.update(after=after.to_json(), shipped=ok, reason=why)
    if ok:
        os.replace(job.stage / "model_float16.tflite", job.stage / UNCURED)
        os.replace(candidate, job.stage / "model_float16.tflite")
        record["uncured_file"] = UNCURED


@dataclass(frozen=True)
class _PatchStep:
    cured: tuple[Path, Errors] | None  # the patched file and its errors, when the patch cured it
    nothing_to_cure: bool = False  # no flushed epsilon in a file whose float32 values were known


def _patched(job: CureJob, work: Path, record: dict) -> _PatchStep:
    """The fp16 file with its flushed epsilons raised in place (fp16_patch.py), measured; no file when that
    cannot cure it (record["patch_note"] says why, and the cured ONNX copy is converted next unless there was
    nothing to cure)."""
    from pipeline.convert import fp16_patch

    work.mkdir(parents=True, exist_ok=True)
    target = work / "model_float16.tflite"
    try:
        patched = fp16_patch.patch_flushed(job.stage / "model_float16.tflite", job.fp32, target)
    except Exception as exc:  # a file LiteRT's schema reads differently: the conversion route still cures it
        record["patch_note"] = f"not patched ({type(exc).__name__}: {first_line(exc, 160)})"
        return _PatchStep(None)
    if patched.left:
        record["patch_note"] = (f"{patched.left} flushed epsilon(s) cannot be raised in the file alone (another op "
                                "reads the value, control flow, or a file over 2 GB)")
        return _PatchStep(None)
    if not patched.patches:
        aligned = "aligned" if patched.aligned else "did not align"
        record["patch_note"] = (f"found no flushed epsilon in model_float16.tflite (its ops {aligned} with the float32 "
                                "file's)")
        return _PatchStep(None, nothing_to_cure=patched.aligned)
    after = measure(job.run_tflite(target), job.reference)
    if after.non_finite_samples:
        record["patch_note"] = f"the patched file still holds NaN or Inf on sample(s) {after.non_finite_samples}"
        return _PatchStep(None)
    record.update(method=PATCHED, patches=[dataclasses.asdict(p) for p in patched.patches])
    return _PatchStep((target, after))


def _converted(job: CureJob, work: Path, record: dict) -> tuple[Path, Errors]:
    """The cured ONNX copy converted again for the fp16 file, measured."""
    result = job.convert_fp16(job.stage / CURED_ONNX, work / "converted")
    if result.tflite.get("fp16") is None:
        raise FileNotFoundError("the converter wrote no fp16 TFLite file for the cured model")
    record["method"] = CONVERTED
    return result.tflite["fp16"], measure(job.run_tflite(result.tflite["fp16"]), job.reference)


def note(record: dict) -> str:
    """One line for convert.json's notes and the report."""
    changed = "; ".join(Change(**c).describe() for c in record["changes"])
    if record["shipped"]:
        before, after = record["before"], record["after"]
        was = (f"NaN/Inf on sample(s) {before['non_finite_samples']}" if before["non_finite_samples"]
               else f"max_abs {before['max_abs']:.3g}")
        return (f"model_float16.tflite is the fp16 cure ({RECORD}, {record.get('method') or CONVERTED}): {changed}; against "
                f"{record['reference']}: {was} -> max_abs {after['max_abs']:.3g}, no NaN/Inf; the uncured file is kept as "
                f"{record['uncured_file']}")
    return f"fp16 cure not shipped ({RECORD}): {changed}: {record['reason']}"
