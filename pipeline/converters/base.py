"""The converter interface. Nothing here depends on a particular onnx2tf version."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from pipeline.config import ARTIFACTS


@dataclass(frozen=True)
class Int8Request:
    """An int8 TFLite on the user's calibration data (never on random data)."""

    calibration: Path | None  # .npz of model-ready inputs, reference layout, leading sample axis
    mode: str  # "full_integer" (weights and activations) | "dynamic_range" (weights only)
    integer_io: bool = False  # also the variant whose inputs and outputs are int8
    samples: int = 0
    origin: str = ""  # where the calibration data came from, for the manifest and the report


@dataclass(frozen=True)
class ConversionOptions:
    """Knobs a converter strategy may set; each maps to a documented converter option."""

    keep_nchw_inputs: tuple[str, ...] = ()
    use_onnxsim: bool = True
    param_replacement_file: Path | None = None
    # On failure, let the converter generate a parameter-replacement file for the failing
    # op, then convert again with it.
    auto_replacement: bool = False
    int8: Int8Request | None = None
    # onnx2tf-side rewrites of ops into builtin-only equivalents (e.g. Erf), for TFLite files
    # that would otherwise need Select TF ops.
    pseudo_ops: tuple[str, ...] = ()
    # The files to write (config key `artifacts`); the SavedModel always.
    outputs: tuple[str, ...] = ARTIFACTS


@dataclass(frozen=True)
class TFTensor:
    name: str
    shape: tuple[int, ...]


@dataclass(frozen=True)
class ConversionResult:
    """Where the converted models are, and the Keras model's inputs and outputs in order."""

    saved_model: Path
    keras: Path | None
    tflite: dict[str, Path]  # precision ("fp32", "fp16", "int8", "int8_integer_io") -> file
    inputs: list[TFTensor]
    outputs: list[TFTensor]
    converter: str
    version: str
    options: ConversionOptions = field(default_factory=ConversionOptions)
    notes: list[str] = field(default_factory=list)
    # The SavedModel's layer names -> the ONNX tensor each computes, when the converter can tell
    # (kept for full-integer int8, whose per-layer errors are named by ONNX node: convert/int8_step.py).
    tf_layers: dict[str, str] = field(default_factory=dict)
    # Layers that compute no ONNX tensor of their own (a step of a node's expansion) -> the first ONNX
    # tensor they feed: shown as such, never as that node's own output.
    tf_layers_feeding: dict[str, str] = field(default_factory=dict)
    # format ("tf_saved_model", "keras", "tflite_fp32", ...) -> which converter, version and backend wrote it
    made_by: dict[str, str] = field(default_factory=dict)


class Converter(Protocol):
    name: str  # the registry's name (pipeline/converters/__init__.py), recorded in convert.json
    label: str  # the package as users know it; "<label> <version>" names the converter in messages
    # `module` or `module:function` a conversion child imports (and calls) ahead of its job, while the
    # parent exports: the converter's libraries and any helper process a conversion will need. The
    # function takes one flag: True when the parent leaves a core idle (the ONNX route has no export),
    # so helpers may start before the imports instead of after them.
    warm_up: str

    def version(self) -> str: ...

    def available(self) -> str | None:
        """None when this converter can run here, else why not and what to do (one line)."""
        ...

    def convert(self, onnx_path: Path, out_dir: Path, log_path: Path, options: ConversionOptions) -> ConversionResult:
        """Convert onnx_path into out_dir, logging the converter's output to log_path."""
        ...

    def int8_converter(self, saved_model: Path, representative):
        """A tf.lite.TFLiteConverter for saved_model set up as this converter makes its full-integer int8
        file, calibrated on `representative` (a generator of feeds keyed by signature input name)."""
        ...

    def layer_model(self, onnx_path: Path, out_dir: Path, log_path: Path, options: ConversionOptions):
        """A model of every intermediate tensor the converter mapped, for layer-by-layer audits
        (pipeline/convert/layer_model.py); built only on request, never by convert()."""
        ...
