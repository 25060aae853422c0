"""An ONNX model as a TFLite float16 file stores it: the reference an fp16 file is judged against.

A TFLite fp16 file keeps every float constant tensor (weights, biases, the epsilon a
normalization adds, masks) as float16 and dequantizes it to float32 before computing on the
CPU. The converter folds first: a BatchNormalization becomes a per-channel scale and shift
(computed in float32), folded into the weights and bias of a Conv in front of it. So a correct
fp16 file is the float32 program of *this* model, not of the original: run in float64, it gives
what the fp16 file is trying to reach, and the file's distance from it is measured against the
float32 noise floor, like any float32 backend's. What storage itself costs (the distance from
the original model) is the precision cost, reported apart.

Values beyond ±65504 are clamped to it, as the converter clamps them (a -1e9 attention mask still masks).
Attributes that are not tensors in TFLite (LeakyRelu's alpha, Clip bounds kept as op options,
shapes and indices) are not rounded. Normalization epsilons are tensors there (`variance + eps`)
and are rounded: an epsilon of 1e-12 is stored as 0, as in the file.
"""
from __future__ import annotations

import numpy as np

NORM_EPSILON_OPS = {"LayerNormalization", "InstanceNormalization", "GroupNormalization", "BatchNormalization"}


FLOAT16_MAX = float(np.finfo(np.float16).max)  # 65504


def round_to_float16(values: np.ndarray) -> np.ndarray:
    """float32 values as a TFLite fp16 file stores them: rounded to nearest even, subnormals kept, and
    finite values beyond ±65504 clamped to it, as TF's converter does (measured, TF 2.21: a -1e9 mask is
    stored as -65504, where a plain float16 cast would make it -inf)."""
    values = np.asarray(values, np.float32)
    clamped = np.where(np.isfinite(values), np.clip(values, -FLOAT16_MAX, FLOAT16_MAX), values)
    return clamped.astype(np.float16).astype(np.float32)


def fp16_storage_copy(model):
    """A copy of `model` whose float constants hold what a TFLite fp16 file stores: BatchNorm folded as
    the converter folds it, then every float32 initializer, Constant and normalization epsilon rounded
    through float16."""
    import onnx

    copy = onnx.ModelProto()
    copy.CopyFrom(model)
    _fold_batch_norms(copy.graph)
    _drop_unused_initializers(copy.graph)
    _round_constants(copy.graph)
    return copy


def _drop_unused_initializers(graph) -> None:
    """The BatchNorm parameters a fold made unused (ONNX Runtime would warn about each)."""
    used = _used_names(graph) | {o.name for o in graph.output}
    for init in [i for i in graph.initializer if i.name not in used]:
        graph.initializer.remove(init)


def _round_constants(graph) -> None:
    from onnx import AttributeProto, TensorProto, numpy_helper

    for init in graph.initializer:
        if init.data_type == TensorProto.FLOAT:
            init.CopyFrom(numpy_helper.from_array(round_to_float16(numpy_helper.to_array(init)), init.name))
    for node in graph.node:
        for attribute in node.attribute:
            if attribute.type == AttributeProto.TENSOR and attribute.t.data_type == TensorProto.FLOAT:
                rounded = round_to_float16(numpy_helper.to_array(attribute.t))
                attribute.t.CopyFrom(numpy_helper.from_array(rounded, attribute.t.name))
            elif node.op_type in NORM_EPSILON_OPS and attribute.name == "epsilon":
                attribute.f = float(round_to_float16(np.float32(attribute.f)))
            elif attribute.type == AttributeProto.GRAPH:
                _round_constants(attribute.g)


def _used_names(graph) -> set[str]:
    """Every value a node reads, subgraphs (If, Loop, Scan bodies) included."""
    from onnx import AttributeProto

    used = set()
    for node in graph.node:
        used.update(node.input)
        for attribute in node.attribute:
            if attribute.type == AttributeProto.GRAPH:
                used |= _used_names(attribute.g)
    return used


def _fold_batch_norms(graph) -> None:
    """Each inference BatchNormalization with constant parameters becomes its float32 scale and shift:
    folded into a Conv whose only consumer it is, else a Mul and an Add (what TF's constant folding
    makes of it before the weights are stored)."""
    from onnx import numpy_helper

    inits = {i.name: i for i in graph.initializer}
    consumers: dict[str, int] = {}
    for node in graph.node:
        for name in node.input:
            consumers[name] = consumers.get(name, 0) + 1
    producers = {out: node for node in graph.node for out in node.output}
    outputs = {o.name for o in graph.output}
    for bn in [n for n in graph.node if n.op_type == "BatchNormalization" and len(n.output) == 1]:
        params = [inits.get(name) for name in bn.input[1:5]]
        if any(p is None for p in params):
            continue
        gamma, beta, mean, var = (numpy_helper.to_array(p).astype(np.float32) for p in params)
        eps = np.float32(next((a.f for a in bn.attribute if a.name == "epsilon"), 1e-5))
        scale = gamma / np.sqrt(var + eps)
        shift = beta - mean * scale
        conv = producers.get(bn.input[0])
        if (conv is not None and conv.op_type == "Conv" and consumers.get(bn.input[0]) == 1
                and bn.input[0] not in outputs and conv.input[1] in inits):
            _fold_into_conv(graph, conv, bn, scale, shift, inits)
        else:
            _as_mul_add(graph, bn, scale, shift)


def _fold_into_conv(graph, conv, bn, scale, shift, inits) -> None:
    from onnx import numpy_helper

    weight = numpy_helper.to_array(inits[conv.input[1]]).astype(np.float32)
    bias = (numpy_helper.to_array(inits[conv.input[2]]).astype(np.float32) if len(conv.input) > 2 and conv.input[2]
            else np.zeros(weight.shape[0], np.float32))
    folded_w = weight * scale.reshape(-1, *([1] * (weight.ndim - 1)))
    folded_b = bias * scale + shift
    w_name, b_name = f"{conv.name or conv.output[0]}_fp16_folded_weight", f"{conv.name or conv.output[0]}_fp16_folded_bias"
    graph.initializer.extend([numpy_helper.from_array(folded_w, w_name), numpy_helper.from_array(folded_b, b_name)])
    del conv.input[1:]
    conv.input.extend([w_name, b_name])
    conv.output[0] = bn.output[0]
    graph.node.remove(bn)


def _as_mul_add(graph, bn, scale, shift) -> None:
    from onnx import helper, numpy_helper

    rank_tail = [1] * 2  # NCHW-style broadcast over the spatial axes; shape inference fixes nothing here
    value_rank = _rank_of(graph, bn.input[0])
    if value_rank is not None:
        rank_tail = [1] * max(value_rank - 2, 0)
    base = bn.name or bn.output[0]
    s_name, t_name, mid = f"{base}_fp16_scale", f"{base}_fp16_shift", f"{base}_fp16_scaled"
    graph.initializer.extend([numpy_helper.from_array(scale.reshape(-1, *rank_tail), s_name),
                              numpy_helper.from_array(shift.reshape(-1, *rank_tail), t_name)])
    index = list(graph.node).index(bn)
    graph.node.remove(bn)
    graph.node.insert(index, helper.make_node("Add", [mid, t_name], [bn.output[0]], name=f"{base}_fp16_add"))
    graph.node.insert(index, helper.make_node("Mul", [bn.input[0], s_name], [mid], name=f"{base}_fp16_mul"))


def _rank_of(graph, name: str) -> int | None:
    for value in [*graph.input, *graph.value_info, *graph.output]:
        if value.name == name and value.type.tensor_type.HasField("shape"):
            return len(value.type.tensor_type.shape.dim)
    return None
