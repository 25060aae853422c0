"""One frozen record per stage: what it wrote to the artifact folder, typed end to end.

Each record round-trips through the JSON file its stage writes (`<stage>.json`), whose
shape is the public contract: `to_json` writes exactly those keys, `from_json` reads them
back into typed values (nested records, TensorSpec, Comparison, Finding, TFModelIO…),
decided from the field annotations. A stage reads an earlier stage's record only through
`ArtifactDir.read(RecordClass)`, never by string key.
"""
from __future__ import annotations

import dataclasses
import types
import typing
from dataclasses import dataclass, field
from typing import Any, ClassVar

from pipeline.compare import Comparison
from pipeline.findings import Finding, count_findings
from pipeline.inputs import TensorSpec
from pipeline.runners.tf_io import TFModelIO


class Record:
    """Base of every stage record: JSON in and out, driven by the dataclass fields."""

    STAGE: ClassVar[str] = ""

    def to_json(self) -> dict:
        return {f.name: _encode(getattr(self, f.name)) for f in dataclasses.fields(self)}

    @classmethod
    def from_json(cls, raw: dict):
        hints = typing.get_type_hints(cls)
        values = {f.name: _decode(hints[f.name], raw[f.name]) for f in dataclasses.fields(cls) if f.name in raw}
        return cls(**values)


def _encode(value: Any) -> Any:
    if hasattr(value, "to_json"):
        return value.to_json()
    if isinstance(value, (list, tuple)):
        return [_encode(v) for v in value]
    if isinstance(value, dict):
        return {k: _encode(v) for k, v in value.items()}
    return value


def _decode(hint: Any, raw: Any) -> Any:
    if raw is None:
        return None
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        typed = [a for a in args if a is not type(None)]
        return _decode(typed[0], raw) if len(typed) == 1 else raw
    if origin in (list, tuple) and args:
        return [_decode(args[0], v) for v in raw]
    if origin is dict and len(args) == 2:
        return {k: _decode(args[1], v) for k, v in raw.items()}
    if isinstance(hint, type) and hasattr(hint, "from_json"):
        return hint.from_json(raw)
    return raw


@dataclass(frozen=True)
class Attempt(Record):
    """One try of a strategy (an exporter, a converter option set, a repair candidate)."""

    strategy: str
    ok: bool
    seconds: float
    error: str | None = None
    converter: str | None = None  # "onnx2tf 1.29.24": which converter a conversion attempt ran


@dataclass(frozen=True)
class ExportRecord(Record):
    STAGE: ClassVar[str] = "export"
    route: str  # "pytorch" (a config) or "onnx" (an ONNX file given)
    source: str
    exporter: str
    attempts: list[Attempt]
    opset: int
    inputs: list[TensorSpec]
    outputs: list[str]
    reference: str  # the backend every other is compared with
    seed: int
    notes: list[str] = field(default_factory=list)
    dims: dict[str, dict] = field(default_factory=dict)  # dynamic dimension name -> {min, max, multiple_of}
    shapes: list[dict[str, int]] = field(default_factory=list)  # extra audited shapes ({name: size}), inputs_<label>.npz


@dataclass(frozen=True)
class ValidateRecord(Record):
    STAGE: ClassVar[str] = "validate"
    checker: str
    shape_inference: str
    inputs_sha256: str
    backends: list[str]
    comparisons: list[Comparison]
    evidence: dict[str, str | None]  # output -> why agreement would prove nothing, or None
    passed: bool
    seconds: float


@dataclass(frozen=True)
class LintRecord(Record):
    STAGE: ClassVar[str] = "lint"
    onnx: str
    findings: list[Finding]
    counts: dict[str, int]
    passed: bool
    notes: list[str]
    seconds: float

    @classmethod
    def of(cls, onnx: str, findings: list[Finding], notes: list[str], seconds: float) -> "LintRecord":
        counts = count_findings([f.to_json() for f in findings])
        return cls(onnx, list(findings), counts, counts["error"] == 0, list(notes), round(seconds, 3))


@dataclass(frozen=True)
class ConvertRecord(Record):
    STAGE: ClassVar[str] = "convert"
    converter: str
    version: str
    options: dict
    seconds: float
    strategy: str
    attempts: list[Attempt]
    models: dict[str, str]  # backend -> file name in the artifact folder
    io: TFModelIO
    ambiguous_layouts: list[str]
    # {"model": "layers.keras", "tensors": [...]} in folders converted before the layer model was built on
    # request; None since (convert/layer_model.py reads both)
    layers: dict | None
    notes: list[str]
    tf_lint: LintRecord | None = None  # the structural checks on the converted SavedModel
    # TF layer -> the ONNX tensor it makes (TFLite names its tensors after these layers: audit/tflite_layers.py)
    tf_layers: dict[str, str] = field(default_factory=dict)
    fp16_onnx: str | None = None  # the ONNX graph whose cure the shipped fp16 file carries (made from it, or patched to its values)
    # format -> the converter, version and backend that wrote the shipped file ({} in older folders)
    made_by: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Int8Record(Record):
    """What full-integer int8 costs each layer, and the file with the fewest layers kept in float that
    brings it within budget (convert/int8_step.py); written by the convert stage when it made int8."""

    STAGE: ClassVar[str] = "int8"
    calibration: str  # where the calibration samples came from (the same ones model_int8.tflite was made on)
    evaluated_on: str  # the in-distribution samples the model's SNR is measured on (never the edge cases)
    min_snr_db: float  # the budget the selection aims at
    layers: list[dict]  # per quantized tensor, worst channel SNR first: SNRs, ONNX nodes, op, PyTorch module
    float_layers: list[dict]  # the layers model_int8_selective.tflite keeps in float; [] when none is needed
    files: dict[str, dict]  # file name -> {"size", "snr_db", "top1_agreement", ...} against the reference
    selective: str | None  # the selective file's name, or None (healthy int8, or no selection within budget)
    notes: list[str]
    seconds: float


@dataclass(frozen=True)
class AuditRecord(Record):
    STAGE: ClassVar[str] = "audit"
    reference: str
    backends: list[str]
    samples: int
    reused_outputs: list[str]
    sample_labels: list[str]
    inputs_sha256: str
    comparisons: list[Comparison]
    histograms: list[dict]
    verdict: str
    verdict_reasons: list[str]
    signal: dict | None
    layers: dict
    localization: list[dict] | None
    seconds: float
    oracle: dict | None = None  # {backend, available, reason}
    fp16_oracle: dict | None = None  # the fp16 storage simulation, as `oracle`
    warnings: list[str] = field(default_factory=list)  # lower-precision costs over the default budget
    tflite_layers: list[dict] | None = None  # TFLite files read layer by layer (audit/tflite_layers.py)


def merged_lint(lint: LintRecord | None, convert: ConvertRecord | None) -> LintRecord | None:
    """The lint stage's findings and the convert stage's checks of the SavedModel, as one record."""
    tf_lint = convert.tf_lint if convert is not None else None
    if lint is None or tf_lint is None:
        return lint or tf_lint
    return LintRecord.of(lint.onnx, lint.findings + tf_lint.findings, lint.notes, lint.seconds + tf_lint.seconds)
