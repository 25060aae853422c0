"""Graph rewrite before conversion: ONNX function ops expanded into their primitive definitions.

onnx2tf 1.x cannot build some function ops (LayerNormalization over [C, H, W] raises "Eager
execution of tf.constant with unsupported shape") or builds them on the wrong axes after its
layout transposes. Each such op has a definition in primitive ops in the ONNX standard itself:
the body is taken from onnx's own schema (`get_function_with_opset_version`, or the
context-dependent body built for this node's attributes and input types), registered as a
model-local function and inlined with `onnx.inliner`. Nothing is decomposed by hand.

The rewritten model is checked, and verified against PyTorch's outputs with ONNX Runtime on
every shared sample before any conversion sees it.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
from onnx import defs, inliner

from pipeline.errors import ConversionError

# Function ops onnx2tf converts natively but wrongly or not at all in some shapes; expanded by default.
EXPANDED = ("LayerNormalization", "GroupNormalization", "Gelu", "MeanVarianceNormalization", "HardSwish",
            "Mish", "CenterCropPad", "Shrink", "Celu", "Swish")
LOCAL_DOMAIN = "pt2tf.expand"


@dataclass(frozen=True)
class Rewrite:
    """What the rewrite did: the ops expanded (node -> op type) and the verified error."""

    path: Path
    expanded: dict[str, str]
    max_abs: float  # ONNX Runtime on the rewritten model against the reference outputs
    reference: str

    def describe(self) -> str:
        ops = sorted(set(self.expanded.values()))
        return (f"expanded {len(self.expanded)} function op(s) ({', '.join(ops)}) into onnx's own definitions; "
                f"ONNX Runtime on the rewritten graph is within {self.max_abs:.3g} of {self.reference}")


def expand_functions(model: onnx.ModelProto, ops: tuple[str, ...] = EXPANDED,
                     nodes: set[str] | None = None) -> tuple[onnx.ModelProto, dict[str, str]]:
    """A copy of `model` whose function ops in `ops` (only the named `nodes`, if given) are inlined."""
    model = onnx.shape_inference.infer_shapes(model)  # context-dependent bodies need input types
    copy = onnx.ModelProto()
    copy.CopyFrom(model)
    opset = _opset(copy)
    types = _value_types(copy)
    expanded: dict[str, str] = {}
    for index, node in enumerate(copy.graph.node):
        if node.domain not in ("", "ai.onnx") or node.op_type not in ops or (nodes is not None and node.name not in nodes):
            continue
        body = _body(node, opset, types)
        if body is None:
            continue
        body.domain, body.name = LOCAL_DOMAIN, f"{node.op_type}_{index}"
        expanded[node.name or body.name] = node.op_type
        node.domain, node.op_type = LOCAL_DOMAIN, body.name
        copy.functions.append(body)
    if not expanded:
        return model, {}
    copy.opset_import.append(onnx.helper.make_opsetid(LOCAL_DOMAIN, 1))
    _type_initializers(copy)  # the inliner's version conversion asks every value its type
    inlined = inliner.inline_local_functions(copy, convert_version=True)
    del inlined.opset_import[:]
    inlined.opset_import.extend(o for o in copy.opset_import if o.domain != LOCAL_DOMAIN)
    return inlined, expanded


def _type_initializers(model: onnx.ModelProto) -> None:
    known = {v.name for v in list(model.graph.input) + list(model.graph.value_info) + list(model.graph.output)}
    for init in model.graph.initializer:
        if init.name not in known:
            model.graph.value_info.append(onnx.helper.make_tensor_value_info(init.name, init.data_type, list(init.dims)))


def _opset(model: onnx.ModelProto) -> int:
    return next(o.version for o in model.opset_import if o.domain in ("", "ai.onnx"))


def _value_types(model: onnx.ModelProto) -> dict[str, onnx.TypeProto]:
    values = list(model.graph.input) + list(model.graph.value_info) + list(model.graph.output)
    types = {v.name: v.type for v in values}
    for init in model.graph.initializer:
        types.setdefault(init.name, onnx.helper.make_tensor_type_proto(init.data_type, list(init.dims)))
    return types


def _body(node: onnx.NodeProto, opset: int, types: dict[str, onnx.TypeProto]) -> onnx.FunctionProto | None:
    """onnx's own definition of `node` at the model's opset, or None when the standard gives none."""
    try:
        schema = defs.get_schema(node.op_type, opset)
    except defs.SchemaError:
        return None
    if schema.has_function:
        version = _at_most(schema.function_opset_versions, opset)
        return schema.get_function_with_opset_version(version) if version else schema.function_body
    version = _at_most(schema.context_dependent_function_opset_versions, opset)
    if not schema.has_context_dependent_function or version is None:
        return None
    if any(name and name not in types for name in node.input):
        return None
    input_types = [types[name].SerializeToString() if name else onnx.TypeProto().SerializeToString() for name in node.input]
    raw = schema.get_context_dependent_function_with_opset_version(version, node.SerializeToString(), input_types)
    body = onnx.FunctionProto()
    body.ParseFromString(raw)
    return body if body.node else None


def _at_most(versions: list[int], opset: int) -> int | None:
    """The newest definition the model's opset may use."""
    usable = [v for v in versions if v <= opset]
    return max(usable) if usable else None


def rewrite_for_conversion(onnx_path: Path, out_path: Path, feeds: list[dict], reference: dict[str, np.ndarray],
                           reference_name: str, atol: float) -> Rewrite:
    """Write the expanded model to out_path after verifying it with ONNX Runtime against `reference`
    (outputs stacked over `feeds`). Raises ConversionError when there is nothing to expand or it disagrees."""
    model, expanded = expand_functions(onnx.load(str(onnx_path)))
    if not expanded:
        raise ConversionError(f"rewrite: no function op to expand ({', '.join(EXPANDED[:3])}, …) in {onnx_path.name}")
    model = _folded(model)
    onnx.checker.check_model(model)
    onnx.save(model, str(out_path))
    max_abs = _verified(out_path, feeds, reference)
    if not max_abs <= atol:
        raise ConversionError(f"rewrite: ONNX Runtime on the rewritten graph is {max_abs:.3g} from {reference_name} "
                              f"(tolerance {atol:g}); not converted")
    return Rewrite(out_path, expanded, max_abs, reference_name)


def _folded(model: onnx.ModelProto) -> onnx.ModelProto:
    """The bodies compute shapes at run time (Shape, Size, ConstantOfShape…); with static shapes
    onnxscript's optimizer folds them to constants, so the converter sees plain arithmetic."""
    import onnxscript.optimizer

    try:
        return onnxscript.optimizer.optimize(model)
    except Exception:  # folding is a convenience: the unfolded graph is equivalent and still verified
        return model


def _verified(path: Path, feeds: list[dict], reference: dict[str, np.ndarray]) -> float:
    import onnxruntime as ort

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    names = [o.name for o in session.get_outputs()]
    worst = 0.0
    for i, feed in enumerate(feeds):
        got = dict(zip(names, session.run(None, feed)))
        for name, expected in reference.items():
            diff = np.abs(got[name].astype(np.float64) - expected[i].astype(np.float64))
            worst = max(worst, float(diff.max()) if diff.size else 0.0)
    return worst


REWRITTEN = "model.rewritten.onnx"


def prepared(strategy, onnx_path: Path, artifacts, stage: Path) -> tuple[Path, list[str]]:
    """The ONNX file a convert strategy converts, and notes for convert.json: model.onnx itself, or,
    for a rewrite strategy, the verified expansion written to the staging folder (shipped as
    model.rewritten.onnx when that strategy wins)."""
    if not strategy.rewrite:
        return onnx_path, []
    from pipeline import inputs as shared_inputs

    feeds = shared_inputs.feeds(shared_inputs.load_npz(artifacts.require(artifacts.inputs, "export")))
    reference_name = "pytorch" if artifacts.output_file("pytorch").exists() else "onnxruntime"
    reference = shared_inputs.load_npz(artifacts.require(artifacts.output_file(reference_name), "validate"))
    return prepared_on(strategy, onnx_path, stage, (feeds, reference, reference_name))


def prepared_on(strategy, onnx_path: Path, stage: Path, verified_on: tuple[list[dict], dict[str, np.ndarray], str]
                ) -> tuple[Path, list[str]]:
    """As `prepared`, with the samples the rewrite is verified on given: the feeds, the reference outputs
    stacked over them, and the reference's name (the backend test suite passes its stored data)."""
    if not strategy.rewrite:
        return onnx_path, []
    feeds, reference, reference_name = verified_on
    scale = max((float(np.abs(a).max()) for a in reference.values() if a.size), default=0.0)
    rewrite = rewrite_for_conversion(onnx_path, stage / REWRITTEN, feeds, reference, reference_name, 1e-4 + 1e-4 * scale)
    return rewrite.path, [f"strategy '{strategy.name}' converted {REWRITTEN}: {rewrite.describe()}"]
