"""ONNX pools that TFLite has no builtin kernel for, rewritten as pools it has.

onnx2tf 1.x converts a 3-D AveragePool or MaxPool to TF's AvgPool3D or MaxPool3D, and a dilated 2-D
MaxPool to TF's Dilation2D. TFLite has builtins for none of them, so its files hold Select TF ops
(FlexAvgPool3D, FlexMaxPool3D, FlexDilation2D) that the standard interpreter cannot run. Each has an
exact form in 2-D pools, which TFLite has:

- A 3-D pool is separable. Pooled over H and W first with the depth folded into the channels
  ([N, C, D, H, W] -> [N, C*D, H, W]), then over D with H and W folded into one axis
  ([N, C, D, H'*W'], a kernel (kd, 1)), it is the same max, or the same mean: the count of padded
  or clipped positions factors per axis, whether padding counts or not.
- A dilated 2-D MaxPool whose strides are multiples of its dilations only ever reads every d-th
  position of the padded input: out[i] = max_j x[s*i + d*j] = max_j x[d*(i*s/d + j)]. So it is a
  pad (with -inf: a max never picks padding), a slice with step d, and an undilated MaxPool with
  strides s/d.

The rewritten graph is checked by onnx's checker and compared with the original by ONNX Runtime on
random inputs before any converter sees it.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
from onnx import helper, numpy_helper

from pipeline.errors import ConversionError

WHY = {"3d": "3-D pool as a 2-D pool over H and W, then one over D (exact: pooling is separable)",
       "dilated": "dilated MaxPool as a -inf pad, a strided slice and an undilated MaxPool (exact when strides are "
                  "multiples of the dilations)"}
CHECK_TOLERANCE = 1e-5  # relative to the output's scale: the same max, or a mean summed in another order


@dataclass(frozen=True)
class PoolRewrite:
    path: Path
    rewritten: dict[str, str]  # node name -> which rewrite (WHY's keys)

    def describe(self) -> list[str]:
        return sorted({WHY[kind] for kind in self.rewritten.values()})


def has_pools(onnx_path: Path) -> bool:
    """Whether the graph has a MaxPool or AveragePool at all (read without its external data)."""
    graph = onnx.load(str(onnx_path), load_external_data=False).graph
    return any(n.op_type in ("MaxPool", "AveragePool") and n.domain in ("", "ai.onnx") for n in graph.node)


def rewrite_pools(onnx_path: Path, out_path: Path) -> PoolRewrite | None:
    """Write onnx_path with its rewritable pools rewritten to out_path, checked against the original
    with ONNX Runtime; None when there is no pool to rewrite. Raises ConversionError when the graph
    cannot be read, checked or run, or the check fails."""
    try:
        return _rewritten(onnx_path, out_path)
    except (ValueError, TypeError, onnx.checker.ValidationError, onnx.shape_inference.InferenceError) as exc:
        raise ConversionError(f"pool rewrite: {type(exc).__name__}: {str(exc).strip().splitlines()[0][:200] if str(exc).strip() else ''}; "
                              "not rewritten") from None


def _rewritten(onnx_path: Path, out_path: Path) -> PoolRewrite | None:
    model = onnx.shape_inference.infer_shapes(onnx.load(str(onnx_path)))
    shapes = _static_shapes(model)
    graph = model.graph
    opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 0)
    nodes, rewritten = [], {}
    for index, node in enumerate(graph.node):
        kind = _kind(node, shapes, opset)
        if kind is None:
            nodes.append(node)
            continue
        name = node.name or f"{node.op_type}_{index}"
        constants, made = (_separable if kind == "3d" else _strided)(node, name, shapes)
        # Constant nodes, not initializers: a graph of IR version 3 must list every initializer as an input
        nodes += [helper.make_node("Constant", [], [c.name], name=c.name, value=c) for c in constants] + made
        rewritten[name] = kind
    if not rewritten:
        return None
    del graph.node[:]
    graph.node.extend(nodes)
    onnx.checker.check_model(model)
    onnx.save(model, str(out_path))
    _checked(onnx_path, out_path)
    return PoolRewrite(out_path, rewritten)


def _static_shapes(model: onnx.ModelProto) -> dict[str, list[int]]:
    values = list(model.graph.input) + list(model.graph.value_info) + list(model.graph.output)
    shapes = {}
    for value in values:
        dims = value.type.tensor_type.shape.dim
        if dims and all(d.HasField("dim_value") for d in dims):
            shapes[value.name] = [d.dim_value for d in dims]
    return shapes


def _attrs(node: onnx.NodeProto) -> dict:
    return {a.name: helper.get_attribute_value(a) for a in node.attribute}


def _kind(node: onnx.NodeProto, shapes: dict, opset: int) -> str | None:
    """'3d' or 'dilated' when the node is a pool this module rewrites exactly, else None."""
    if node.domain not in ("", "ai.onnx") or node.op_type not in ("AveragePool", "MaxPool") or len(node.output) != 1:
        return None
    attrs = _attrs(node)
    rank = len(shapes.get(node.input[0], []))
    auto_pad = attrs.get("auto_pad", b"NOTSET")
    if auto_pad not in (b"NOTSET", "NOTSET") or node.input[0] not in shapes or node.output[0] not in shapes:
        return None
    dilations = list(attrs.get("dilations", [1] * (rank - 2)))
    if rank == 5 and dilations == [1, 1, 1] and opset >= 5:
        return "3d"
    strides = list(attrs.get("strides", [1] * (rank - 2)))
    if (rank == 4 and node.op_type == "MaxPool" and max(dilations) > 1 and not attrs.get("ceil_mode", 0) and opset >= 11
            and all(s % d == 0 for s, d in zip(strides, dilations))):
        return "dilated"
    return None


def _shape_constant(name: str, values: list[int]) -> onnx.TensorProto:
    return numpy_helper.from_array(np.array(values, np.int64), name)


def _separable(node: onnx.NodeProto, name: str, shapes: dict) -> tuple[list, list]:
    """[N,C,D,H,W] -> [N,C*D,H,W], pooled over (H, W) -> [N,C,D,H'*W'], pooled over (D, 1) -> [N,C,D',H',W']."""
    attrs = _attrs(node)
    n, c, d, h, w = shapes[node.input[0]]
    out = shapes[node.output[0]]
    kd, kh, kw = attrs["kernel_shape"]
    sd, sh, sw = attrs.get("strides", [1, 1, 1])
    pd0, ph0, pw0, pd1, ph1, pw1 = attrs.get("pads", [0] * 6)
    shared = {k: v for k, v in attrs.items() if k in ("ceil_mode", "count_include_pad")}
    t = lambda suffix: f"{name}/{suffix}"  # noqa: E731
    constants = [_shape_constant(t("hw_in_shape"), [n, c * d, h, w]),
                 _shape_constant(t("d_in_shape"), [n, c, d, out[3] * out[4]]),
                 _shape_constant(t("out_shape"), out)]
    made = [
        helper.make_node("Reshape", [node.input[0], t("hw_in_shape")], [t("hw_in")], name=t("fold_depth")),
        helper.make_node(node.op_type, [t("hw_in")], [t("hw_out")], name=t("pool_hw"), kernel_shape=[kh, kw],
                         strides=[sh, sw], pads=[ph0, pw0, ph1, pw1], **shared),
        helper.make_node("Reshape", [t("hw_out"), t("d_in_shape")], [t("d_in")], name=t("fold_hw")),
        helper.make_node(node.op_type, [t("d_in")], [t("d_out")], name=t("pool_d"), kernel_shape=[kd, 1],
                         strides=[sd, 1], pads=[pd0, 0, pd1, 0], **shared),
        helper.make_node("Reshape", [t("d_out"), t("out_shape")], [node.output[0]], name=t("unfold")),
    ]
    return constants, made


def _strided(node: onnx.NodeProto, name: str, shapes: dict) -> tuple[list, list]:
    """A -inf pad, a slice with the dilations as steps, and a MaxPool with strides / dilations."""
    attrs = _attrs(node)
    kh, kw = attrs["kernel_shape"]
    sh, sw = attrs.get("strides", [1, 1])
    dh, dw = attrs["dilations"]
    ph0, pw0, ph1, pw1 = attrs.get("pads", [0, 0, 0, 0])
    t = lambda suffix: f"{name}/{suffix}"  # noqa: E731
    big = np.iinfo(np.int64).max
    constants = [_shape_constant(t("pads"), [0, 0, ph0, pw0, 0, 0, ph1, pw1]),
                 numpy_helper.from_array(np.array(-np.inf, np.float32), t("minus_inf")),
                 _shape_constant(t("starts"), [0, 0]), _shape_constant(t("ends"), [big, big]),
                 _shape_constant(t("axes"), [2, 3]), _shape_constant(t("steps"), [dh, dw])]
    made = [
        helper.make_node("Pad", [node.input[0], t("pads"), t("minus_inf")], [t("padded")], name=t("pad"), mode="constant"),
        helper.make_node("Slice", [t("padded"), t("starts"), t("ends"), t("axes"), t("steps")], [t("read")], name=t("read")),
        helper.make_node("MaxPool", [t("read")], [node.output[0]], name=t("pool"), kernel_shape=[kh, kw],
                         strides=[sh // dh, sw // dw]),
    ]
    return constants, made


def _checked(original: Path, rewritten: Path) -> None:
    """ONNX Runtime runs both graphs on the same seeded inputs; they must agree to the pools' rounding."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.log_severity_level = 3
    try:
        sessions = [ort.InferenceSession(str(p), options, providers=["CPUExecutionProvider"]) for p in (original, rewritten)]
        expected, got = _outputs(sessions)
    except Exception as exc:  # noqa: BLE001 - ONNX Runtime raises its own C++ types (Fail, InvalidGraph, ...), none shared
        raise ConversionError(f"pool rewrite: ONNX Runtime cannot run the graph or its rewrite ({str(exc)[:200]}); "
                              "not rewritten") from None
    for name, want, have in zip((o.name for o in sessions[0].get_outputs()), expected, got):
        want, have = np.asarray(want, np.float64), np.asarray(have, np.float64)  # bool and integer outputs too
        scale = max(float(np.max(np.abs(want))), 1e-30) if want.size else 1.0
        off = float(np.max(np.abs(want - have), initial=0.0)) if want.shape == have.shape else float("inf")
        if not off <= CHECK_TOLERANCE * scale:
            raise ConversionError(f"pool rewrite: the rewritten graph's output '{name}' is {off:.3g} from the original's "
                                  f"(shapes {list(want.shape)} and {list(have.shape)}); not rewritten")


def _outputs(sessions: list) -> tuple[list, list]:
    """Both sessions' outputs on one seeded input per graph input."""
    rng = np.random.default_rng(0)
    feed = {}
    for value in sessions[0].get_inputs():
        if value.type != "tensor(float)" or not all(isinstance(d, int) for d in value.shape):
            raise ConversionError(f"pool rewrite: input '{value.name}' is not a static float32 tensor "
                                  f"({value.type} {value.shape}); not rewritten")
        feed[value.name] = rng.standard_normal(value.shape).astype(np.float32)
    expected, got = (s.run(None, feed) for s in sessions)
    return expected, got
