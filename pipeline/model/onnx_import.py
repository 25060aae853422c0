"""The ONNX route: take an ONNX file made elsewhere into the artifact folder.

Old files (opset < 7, the oldest ONNX Runtime guarantees) are upgraded with
onnx's version converter. Files from IR version < 4 list their initializers as
graph inputs; those are constants, so they are removed from the inputs first
(otherwise the converter fails with "Input 1 is undefined!"). A PRelu slope per
channel is given the shape opset 7's broadcasting reads as per channel (see
`_prelu_slopes_per_channel`): the converter keeps it as it is.
"""
from __future__ import annotations

import itertools
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

import onnx
from onnx import numpy_helper, version_converter
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
        result.notes.append(
            f"upgraded from opset {opset} to {UPGRADE_TARGET_OPSET} with onnx.version_converter "
            f"(ONNX Runtime only guarantees opset >= {MIN_RUNNABLE_OPSET})"
        )
        result.notes += _prelu_slopes_per_channel(model)
        result.model = upgrade(model, UPGRADE_TARGET_OPSET)
        result.opset = UPGRADE_TARGET_OPSET
    return result


def _prelu_slopes_per_channel(model: onnx.ModelProto) -> list[str]:
    """Before opset 7, PRelu applies a slope of shape (C) along axis 1; from opset 7 it broadcasts the slope
    from the last axis, and onnx's version converter keeps the slope as it is. On an input of rank >= 3 the
    upgraded file then means something else, and ONNX Runtime refuses it ("Attempting to broadcast an axis by
    a dimension other than 1"; onnx's pytorch-converted/test_PReLU_2d_multiparam). Each such slope constant
    gets trailing axes of 1 ([C] -> [C, 1, 1] on NCHW) in place (a copy where anything else reads it), so
    the upgraded file means what the old one did. A slope that is no constant, an input whose rank shape
    inference cannot tell, and a PRelu inside a subgraph are left as they are, and the notes say so.
    Returns notes on what was changed or left."""
    ranks, constants = _ranks(model), {init.name: init for init in model.graph.initializer}
    notes, per_channel = [], []  # per_channel: (node, rank) of each PRelu whose constant slope needs the reshape
    for node in _prelus(model.graph):
        rank, slope = ranks.get(node.input[0]), constants.get(node.input[1])
        if slope is not None and (len(slope.dims) != 1 or slope.dims[0] == 1):
            continue  # one slope for every channel, or already shaped for broadcasting
        if slope is None or rank is None:
            unknown = "is not a constant" if slope is None else f"is [{slope.dims[0]}] and the rank of its input '{node.input[0]}' is unknown"
            notes.append(f"PRelu node '{node.name or node.output[0]}': its slope '{node.input[1]}' {unknown}, so its shape "
                         "for opset 7's broadcasting was not checked; if it holds one value per channel of an input of "
                         "rank >= 3, the upgraded file broadcasts it from the last axis: re-export the model with opset >= 7")
        elif rank >= 3:
            per_channel.append((node, rank))
    notes += [f"PRelu node '{node.name or node.output[0]}' is inside a subgraph: its slope's shape for opset 7's broadcasting "
              "was not checked; re-export the model with opset >= 7" for graph in _subgraphs(model.graph) for node in _prelus(graph)]
    readers = Counter(_read_names(model.graph))
    fixed = Counter((node.input[1], rank) for node, rank in per_channel)  # readers each reshape would serve
    taken = _names(model.graph)
    made: dict[tuple[str, int], str] = {}
    for node, rank in per_channel:
        slope = constants[node.input[1]]
        shape = [slope.dims[0]] + [1] * (rank - 2)
        notes.append(f"PRelu node '{node.name or node.output[0]}': slope '{slope.name}' of shape [{slope.dims[0]}] "
                     f"reshaped to {shape} for the upgrade (opset 6 applies it per channel, axis 1; opset 7 would "
                     "broadcast it from the last axis)")
        if (slope.name, rank) not in made:
            made[slope.name, rank] = _reshaped(model, slope, shape, readers[slope.name] > fixed[slope.name, rank], taken)
        node.input[1] = made[slope.name, rank]
    return notes


def _prelus(graph: onnx.GraphProto) -> list[onnx.NodeProto]:
    return [node for node in graph.node if node.op_type == "PRelu" and node.domain in ("", "ai.onnx") and len(node.input) >= 2]


def _subgraphs(graph: onnx.GraphProto) -> Iterator[onnx.GraphProto]:
    """Every graph inside graph's nodes (If, Loop, Scan bodies), at any depth."""
    for node in graph.node:
        for attribute in node.attribute:
            for inner in [attribute.g] if attribute.HasField("g") else list(attribute.graphs):
                yield inner
                yield from _subgraphs(inner)


def _read_names(graph: onnx.GraphProto) -> list[str]:
    """Each name read in graph: by its nodes and those of its subgraphs, and as a graph output."""
    return [name for g in [graph, *_subgraphs(graph)] for node in g.node for name in node.input] + \
        [value.name for value in graph.output]


def _names(graph: onnx.GraphProto) -> set[str]:
    return ({init.name for init in graph.initializer} | {value.name for value in [*graph.input, *graph.output, *graph.value_info]}
            | {name for g in [graph, *_subgraphs(graph)] for node in g.node for name in node.output})


def _reshaped(model: onnx.ModelProto, slope: onnx.TensorProto, shape: list[int], shared: bool, taken: set[str]) -> str:
    """The name of a constant holding `slope` in `shape`: slope itself, reshaped, when only the PRelus this
    shape serves read it; else a copy under a new name ("s_3x1x1", or "s_3x1x1_2" where that is taken)."""
    reshaped = numpy_helper.to_array(slope).reshape(shape)
    if not shared:
        slope.CopyFrom(numpy_helper.from_array(reshaped, slope.name))
        return slope.name
    base = f"{slope.name}_{'x'.join(map(str, shape))}"
    name = next(n for n in itertools.chain([base], (f"{base}_{i}" for i in itertools.count(2))) if n not in taken)
    taken.add(name)
    model.graph.initializer.append(numpy_helper.from_array(reshaped, name))
    return name


def _ranks(model: onnx.ModelProto) -> dict[str, int]:
    """Rank of each tensor onnx's shape inference knows (the graph inputs' at least)."""
    inferred = onnx.shape_inference.infer_shapes(model)
    values = [*inferred.graph.input, *inferred.graph.value_info, *inferred.graph.output]
    return {value.name: len(value.type.tensor_type.shape.dim) for value in values
            if value.type.HasField("tensor_type") and value.type.tensor_type.HasField("shape")}


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
