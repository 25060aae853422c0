"""The ONNX route: take an ONNX file made elsewhere into the artifact folder.

Old files (opset < 7, the oldest ONNX Runtime guarantees) are upgraded with
onnx's version converter. Files from IR version < 4 list their initializers as
graph inputs; those are constants, so they are removed from the inputs first
(otherwise the converter fails with "Input 1 is undefined!").
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import onnx
from onnx import version_converter
from onnx.external_data_helper import load_external_data_for_model

from pipeline.errors import UsageError, ValidationError, first_line
from pipeline.inputs import TensorSpec

MIN_RUNNABLE_OPSET = 7
UPGRADE_TARGET_OPSET = 13
ONNX_DTYPES = {
    onnx.TensorProto.FLOAT: "float32",
    onnx.TensorProto.FLOAT16: "float16",
    onnx.TensorProto.INT64: "int64",
    onnx.TensorProto.INT32: "int32",
    onnx.TensorProto.BOOL: "bool",
}


@dataclass
class ImportResult:
    model: onnx.ModelProto
    opset: int
    notes: list[str] = field(default_factory=list)


def load_onnx(path: Path) -> onnx.ModelProto:
    """Load an ONNX file, turning a corrupt or truncated file into one clear error.

    External data must live inside the model's folder: a file that points elsewhere
    (`../secret`, an absolute path) is refused, never read."""
    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception as exc:  # protobuf raises DecodeError, onnx raises several types
        raise UsageError(f"{path}: not a readable ONNX model ({type(exc).__name__}); check that the file is complete") from None
    _check_external_data(model, path)
    try:
        load_external_data_for_model(model, str(path.parent))
    except (OSError, ValueError) as exc:
        raise UsageError(f"{path}: its external data cannot be read ({exc}); keep the .data file next to the model") from None
    _check_opset(model, path)
    return model


def _check_external_data(model: onnx.ModelProto, path: Path) -> None:
    folder = path.parent.resolve()
    for tensor in model.graph.initializer:
        if tensor.data_location != onnx.TensorProto.EXTERNAL:
            continue
        location = next((e.value for e in tensor.external_data if e.key == "location"), "")
        target = (folder / location).resolve()
        if Path(location).is_absolute() or not target.is_relative_to(folder):
            raise UsageError(f"{path}: initializer '{tensor.name}' points to external data outside the model's folder "
                             f"('{location}'); refused: move the data next to the model")


def _check_opset(model: onnx.ModelProto, path: Path) -> None:
    opset, newest = default_opset(model), onnx.defs.onnx_opset_version()
    if opset > newest:
        raise UsageError(f"{path}: opset {opset} is newer than this onnx {onnx.__version__} supports ({newest}); "
                         f"export with opset <= {newest}")


def default_opset(model: onnx.ModelProto) -> int:
    return next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 0)


def import_onnx(path: Path) -> ImportResult:
    model = load_onnx(path)
    opset = default_opset(model)
    result = ImportResult(model=model, opset=opset)
    if opset < MIN_RUNNABLE_OPSET:
        result.model = upgrade(model, UPGRADE_TARGET_OPSET)
        result.opset = UPGRADE_TARGET_OPSET
        result.notes.append(
            f"upgraded from opset {opset} to {UPGRADE_TARGET_OPSET} with onnx.version_converter "
            f"(ONNX Runtime only guarantees opset >= {MIN_RUNNABLE_OPSET})"
        )
    return result


def upgrade(model: onnx.ModelProto, target: int) -> onnx.ModelProto:
    initializers = {init.name for init in model.graph.initializer}
    real_inputs = [value for value in model.graph.input if value.name not in initializers]
    del model.graph.input[:]
    model.graph.input.extend(real_inputs)
    model.ir_version = max(model.ir_version, 4)  # IR 4 lets initializers stand alone
    try:
        return version_converter.convert_version(model, target)
    except Exception as exc:  # the converter raises its own C++ error types
        raise ValidationError(f"opset {default_opset(model)} is too old: onnx's version converter could not upgrade the "
                              f"model to opset {target} ({first_line(exc)}); re-export it with a newer opset") from None


def input_specs(model: onnx.ModelProto, notes: list[str]) -> list[TensorSpec]:
    """Inputs of an ONNX graph (initializers excluded). A free dimension at axis 0 stays dynamic (its
    `dim_param` names it, else 'batch'; example size 1): onnx2tf keeps it free in every file, and the audit
    runs it at more sizes. Any other free dimension is 1 in the audit's inputs, with a note."""
    initializers = {init.name for init in model.graph.initializer}
    return [_spec(value, notes) for value in model.graph.input if value.name not in initializers]


def _spec(value: onnx.ValueInfoProto, notes: list[str]) -> TensorSpec:
    tensor_type = value.type.tensor_type
    dtype = ONNX_DTYPES.get(tensor_type.elem_type)
    if dtype is None:
        name = onnx.TensorProto.DataType.Name(tensor_type.elem_type)
        raise UsageError(f"input '{value.name}' has dtype {name}; supported: {', '.join(ONNX_DTYPES.values())}")
    shape, dynamic = [], {}
    for index, dim in enumerate(tensor_type.shape.dim):
        if dim.HasField("dim_value") and dim.dim_value > 0:
            shape.append(dim.dim_value)
            continue
        shape.append(1)
        if index == 0:
            dynamic[0] = dim.dim_param if dim.dim_param.isidentifier() else "batch"
        else:
            notes.append(f"input '{value.name}' dimension {index} ('{dim.dim_param}') is dynamic; the audit's inputs set it "
                         "to 1 and run no other size of it (the ONNX route varies a free axis 0 only)")
    low, high = (-1.0, 1.0) if dtype.startswith("float") else (0, 2)
    return TensorSpec(value.name, tuple(shape), dtype, low, high, dynamic)


def output_names(model: onnx.ModelProto) -> list[str]:
    return [value.name for value in model.graph.output]
