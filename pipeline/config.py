"""Model config: a YAML file validated against a schema, or an ONNX file.

The YAML contract (`name`, `model`, `checkpoint`, `inputs`) is fixed; every other
key is optional and has a default. Errors name the file, the key and the fix.
"""
from __future__ import annotations

import difflib
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError as PydanticError, field_validator, model_validator

from pipeline.errors import ConfigError, UsageError

DType = Literal["float32", "float16", "int64", "int32", "bool"]
FLOAT_DTYPES = ("float32", "float16")
CONFIGS_DIR = Path(__file__).resolve().parent.parent / "configs"


class InputSpec(BaseModel):
    """One forward() argument: its name, static shape, dtype and sampling range."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    name: str
    shape: list[int] = Field(min_length=0)
    dtype: DType = "float32"
    low: float = 0.0
    high: float = 1.0
    # Axes that stay dynamic in every converted model, by name: {0: batch, 2: height}. A name shared
    # across inputs is one size. `shape` stays the example shape the export traces.
    dynamic: dict[int, str] = Field(default_factory=dict)

    @field_validator("shape")
    @classmethod
    def _positive_dims(cls, shape: list[int]) -> list[int]:
        if any(d <= 0 for d in shape):
            raise ValueError(f"every dimension must be a positive integer, got {shape}")
        return shape

    @field_validator("dynamic", mode="before")
    @classmethod
    def _one_name_per_axis(cls, raw: object) -> object:
        if isinstance(raw, dict):
            axes = [int(a) if isinstance(a, str) and a.lstrip("-").isdigit() else a for a in raw]
            repeated = sorted({a for a in axes if isinstance(a, int) and axes.count(a) > 1})
            if repeated:
                raise ValueError(f"axis {repeated[0]} is listed twice; give each axis one name")
        return raw

    @model_validator(mode="after")
    def _dynamic_axes_in_range(self) -> "InputSpec":
        bad = sorted(a for a in self.dynamic if not 0 <= a < len(self.shape))
        if bad:
            raise ValueError(f"axis {bad[0]} is out of range for input '{self.name}' of shape {self.shape} "
                             f"(axes 0 to {len(self.shape) - 1})")
        if any(not name.isidentifier() for name in self.dynamic.values()):
            raise ValueError(f"dimension names must be identifiers (letters, digits, _), got {sorted(self.dynamic.values())}")
        return self


class DimConstraint(BaseModel):
    """The sizes a named dynamic dimension may take: min <= size <= max, a multiple of `multiple_of`."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    min: int = Field(default=1, ge=1)
    max: int | None = Field(default=None, ge=1)
    multiple_of: int = Field(default=1, ge=1)

    @model_validator(mode="after")
    def _ordered(self) -> "DimConstraint":
        if self.max is not None and self.max < self.min:
            raise ValueError(f"max {self.max} is below min {self.min}")
        return self

    def allows(self, size: int) -> bool:
        return size >= self.min and (self.max is None or size <= self.max) and size % self.multiple_of == 0

    def describe(self) -> str:
        parts = [f"min {self.min}"] + ([f"max {self.max}"] if self.max is not None else [])
        return ", ".join(parts + ([f"multiple of {self.multiple_of}"] if self.multiple_of > 1 else []))


class Tolerance(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    atol: float = Field(ge=0)
    rtol: float = Field(ge=0)


class PrecisionBudgetConfig(BaseModel):
    """What a lower precision (fp16, int8) may cost: SNR against PyTorch, top-1/top-5 agreement."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    min_snr_db: float | None = None
    min_top1: float | None = Field(default=None, ge=0, le=1)
    min_top5: float | None = Field(default=None, ge=0, le=1)


class PreprocessConfig(BaseModel):
    """How raw images become model inputs: resize to [h, w], scale to [0, 1], (x - mean) / std, then
    the layout the model takes. Used for int8 calibration images and recorded in the manifest."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    resize: list[int] | None = Field(default=None, min_length=2, max_length=2)
    mean: list[float] = Field(default_factory=lambda: [0.0])
    std: list[float] = Field(default_factory=lambda: [1.0])
    layout: Literal["nchw", "nhwc"] = "nchw"

    @field_validator("std")
    @classmethod
    def _nonzero_std(cls, std: list[float]) -> list[float]:
        if any(v == 0 for v in std):
            raise ValueError(f"std must not hold 0, got {std}")
        return std


class Int8Config(BaseModel):
    """int8 TFLite, calibrated on the user's data: an .npz of model-ready inputs or a folder of images."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    calibration: str | None = None  # relative to the config file
    samples: int = Field(default=100, ge=1)
    mode: Literal["full_integer", "dynamic_range"] = "full_integer"
    integer_io: bool = False  # also write the variant with int8 inputs and outputs

    @model_validator(mode="after")
    def _calibrated(self) -> "Int8Config":
        if self.mode == "full_integer" and not self.calibration:
            raise ValueError("full_integer needs 'calibration' (an .npz of inputs or a folder of images); "
                             "it is never calibrated on random data")
        return self


class QuantizeConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    int8: Int8Config | None = None


class ConvertLimitsConfig(BaseModel):
    """Limits of one conversion attempt (each runs in its own process): a share of the machine's RAM and seconds."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    memory_fraction: float = Field(default=0.75, gt=0, le=1)
    seconds: float = Field(default=1800.0, gt=0)


class RepairConfig(BaseModel):
    """Bounds of the repair search (run only when the TF backends fail while ONNX Runtime agrees)."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    max_candidates: int = Field(default=12, ge=0)  # conversions tried; 0 turns the search off
    max_seconds: float = Field(default=900.0, gt=0)  # no new candidate starts after this


# What a conversion can ship; a config's `artifacts` picks some (the SavedModel always: the layout
# probe, the TF-side lint and the int8 route read it).
ARTIFACTS = ("saved_model", "keras", "tflite_fp32", "tflite_fp16")


class ModelConfig(BaseModel):
    """The schema of `configs/<name>.yaml`."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    name: str | None = None
    model: str
    model_args: dict = Field(default_factory=dict)
    checkpoint: str | None = None
    # Opt-in to torch.load(weights_only=False) for a checkpoint that holds Python objects.
    # Unpickling runs arbitrary code from the file: only for checkpoints you trust.
    unsafe_checkpoint: bool = False
    inputs: list[InputSpec] = Field(min_length=1)
    outputs: list[str] | None = None
    seed: int = 0
    samples: int = Field(default=4, ge=1)
    opset: int | None = None
    exporter: Literal["auto", "dynamo", "torchscript"] = "auto"
    tolerances: dict[str, Tolerance] = Field(default_factory=dict)
    precision_budget: dict[Literal["fp16", "int8"], PrecisionBudgetConfig] = Field(default_factory=dict)
    convert: ConvertLimitsConfig = Field(default_factory=ConvertLimitsConfig)
    classification_outputs: Literal["auto"] | list[str] = "auto"
    quantize: QuantizeConfig = Field(default_factory=QuantizeConfig)
    preprocess: PreprocessConfig | None = None
    repair: RepairConfig = Field(default_factory=RepairConfig)
    artifacts: list[Literal[ARTIFACTS]] = Field(default_factory=lambda: list(ARTIFACTS))  # type: ignore[valid-type]
    # Constraints per dynamic dimension name (inputs[*].dynamic), and the extra shapes the audit runs
    # ({name: size} each; names left out keep the example size).
    dims: dict[str, DimConstraint] = Field(default_factory=dict)
    audit_shapes: list[dict[str, int]] | None = None

    @field_validator("artifacts")
    @classmethod
    def _saved_model_always(cls, value: list[str]) -> list[str]:
        if "saved_model" not in value:
            raise ValueError("must list saved_model: the SavedModel is always written (the layout probe, the TF-side "
                             "lint and the int8 route read it); e.g. artifacts: [saved_model, tflite_fp32]")
        return list(dict.fromkeys(value))

    @model_validator(mode="after")
    def _dynamic_dims_agree(self) -> "ModelConfig":
        sizes = self.dynamic_sizes()
        for where, names in [("dims", list(self.dims))] + [(f"audit_shapes[{i}]", list(s)) for i, s in enumerate(self.audit_shapes or [])]:
            for name in names:
                if name not in sizes:
                    hint = _did_you_mean(name, sorted(sizes)) or f"the inputs' dynamic names are {sorted(sizes) or 'none'}"
                    raise ValueError(f"'{where}' names '{name}', which no input's 'dynamic' declares; {hint}")
        for name, size in sizes.items():
            self._check_size(name, size, "the example shape")
        for i, shape in enumerate(self.audit_shapes or []):
            for name, size in shape.items():
                self._check_size(name, size, f"audit_shapes[{i}]")
        return self

    def dynamic_sizes(self) -> dict[str, int]:
        """Each dynamic dimension name and its size in the example shapes; one size per name."""
        sizes: dict[str, int] = {}
        where: dict[str, str] = {}
        for spec in self.inputs:
            for axis, name in spec.dynamic.items():
                here = f"{spec.name} axis {axis}"
                if sizes.setdefault(name, spec.shape[axis]) != spec.shape[axis]:
                    raise ValueError(f"dimension '{name}' is {sizes[name]} at {where[name]} but {spec.shape[axis]} at {here} "
                                     "in the example shapes; one name is one size")
                where.setdefault(name, here)
        return sizes

    def constraint(self, name: str) -> "DimConstraint":
        return self.dims.get(name) or DimConstraint()

    def _check_size(self, name: str, size: int, where: str) -> None:
        if not self.constraint(name).allows(size):
            raise ValueError(f"dimension '{name}' is {size} in {where}, outside its constraints ({self.constraint(name).describe()})")


@dataclass(frozen=True)
class Source:
    """What the user pointed MODEL at: a YAML config or an ONNX file."""

    kind: Literal["config", "onnx"]
    path: Path
    name: str
    config: ModelConfig | None = None

    @property
    def base_dir(self) -> Path:
        return self.path.parent

    def resolve(self, value: str) -> Path:
        """A path the config gives (its model file, its checkpoint): as written when absolute, else relative to
        the config's folder."""
        path = Path(value)
        return path if path.is_absolute() else (self.base_dir / path).resolve()


def resolve_source(arg: str) -> Source:
    """Turn MODEL (a config name, a YAML path or an .onnx path) into a Source."""
    path = Path(arg)
    if path.suffix == ".onnx":
        if not path.is_file():
            raise UsageError(f"{arg}: ONNX file not found; check the path")
        return Source(kind="onnx", path=path.resolve(), name=_onnx_name(path))
    if path.suffix in (".yaml", ".yml"):
        if not path.is_file():
            raise ConfigError(f"{arg}: config file not found; check the path")
        return load_config(path)
    candidate = CONFIGS_DIR / f"{arg}.yaml"
    if candidate.is_file():
        return load_config(candidate)
    known = sorted(p.relative_to(CONFIGS_DIR).with_suffix("").as_posix() for p in CONFIGS_DIR.rglob("*.yaml"))
    hint = _did_you_mean(arg, known) or f"known configs: {', '.join(known)}"
    raise UsageError(f"MODEL={arg}: not a config name, a .yaml file or an .onnx file; {hint}")


def _onnx_name(path: Path) -> str:
    # Backend test data are all called model.onnx: name them after their folder.
    return path.parent.name if path.stem == "model" and path.parent.name else path.stem


def load_config(path: Path) -> Source:
    """Parse and validate a YAML model config."""
    raw = _read_yaml(path)
    try:
        config = ModelConfig.model_validate(raw)
    except PydanticError as exc:
        raise ConfigError(_explain(path, exc)) from None
    name = config.name or path.stem
    return Source(kind="config", path=path.resolve(), name=name, config=config)


def _read_yaml(path: Path) -> dict:
    try:
        text = path.read_text()
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read config ({exc.strerror})") from None
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{path}:{mark.line + 1}" if mark else str(path)
        problem = getattr(exc, "problem", None) or "invalid YAML"
        raise ConfigError(f"{where}: YAML syntax error: {problem}; fix the YAML at that line") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: expected a mapping of keys (model, inputs, ...), got {type(raw).__name__}")
    return raw


def _explain(path: Path, exc: PydanticError) -> str:
    """One line for the first schema error: where, what, and how to fix it."""
    errors = exc.errors()
    # A misspelt required key is both "extra" and "missing": the typo is the useful one.
    err = next((e for e in errors if e["type"] == "extra_forbidden"), errors[0])
    loc = _format_loc(err["loc"])
    kind = err["type"]
    if kind == "extra_forbidden":
        allowed = _allowed_keys(err["loc"])
        hint = _did_you_mean(str(err["loc"][-1]), allowed) or f"allowed keys: {', '.join(allowed)}"
        return f"{path}: unknown key '{loc}'; {hint}"
    if kind == "missing":
        return f"{path}: missing required key '{loc}'; see configs/seed_ym.yaml for an example"
    if kind == "value_error":  # our own validators: the message says it all
        message = err["msg"].removeprefix("Value error, ")
        return f"{path}: key '{loc}': {message}" if loc else f"{path}: {message}"
    return f"{path}: key '{loc}': {err['msg']} (got {err.get('input')!r})"


def _format_loc(loc: tuple) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def _allowed_keys(loc: tuple) -> list[str]:
    schema = (InputSpec if "inputs" in loc else Tolerance if "tolerances" in loc
              else PrecisionBudgetConfig if "precision_budget" in loc else ModelConfig)
    nested = {"dims": DimConstraint, "int8": Int8Config, "quantize": QuantizeConfig, "preprocess": PreprocessConfig, "repair": RepairConfig, "convert": ConvertLimitsConfig}
    schema = next((nested[key] for key in reversed(loc[:-1]) if key in nested), schema)
    return sorted(schema.model_fields)


def _did_you_mean(word: str, choices: list[str]) -> str | None:
    close = difflib.get_close_matches(word, choices, n=1, cutoff=0.6)
    return f"did you mean '{close[0]}'?" if close else None
