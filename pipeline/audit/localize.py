"""Localization: the first node where two backends part ways, and why.

Walks the aligned intermediate tensors of a backend pair in graph order and stops at
the first one beyond tolerance. Its node's inputs are traced back to the nearest
aligned tensors: if those still agree, the error appears at this node (or in the
unaligned nodes between, which are listed); otherwise it was inherited.
"""
from __future__ import annotations

from typing import Callable

import onnx
from onnx import helper

from pipeline.model.graph import TensorOrder

ATTRIBUTE_KEYS = ("epsilon", "pads", "strides", "kernel_shape", "dilations", "group", "auto_pad",
                  "ceil_mode", "count_include_pad", "mode", "alpha", "axis")
MAX_SPAN = 50


def localize(pair: dict, order: TensorOrder, module_of: Callable, lint_findings: list[dict]) -> dict:
    """One localization record for a pair's layer statistics (see layers.layers_json)."""
    by_name = {t["tensor"]: t for t in pair["tensors"]}
    first = next((t for t in pair["tensors"] if t["exceeds"]), None)
    base = {"reference": pair["reference"], "candidate": pair["candidate"]}
    if first is None:
        judged = any(t.get("noise_ratio") is not None for t in pair["tensors"])
        limit = "the float32 noise floor" if judged else "tolerance"
        return not_localized(pair, f"no divergence beyond {limit}: none of the {len(by_name)} aligned intermediate "
                                   f"tensors exceeds it")
    node = order.producer[first["tensor"]]
    upstream, span = _upstream(node, order, by_name)
    error_in = max((by_name[u]["max_abs"] for u in upstream), default=0.0)
    origin = "inherited" if any(by_name[u]["exceeds"] for u in upstream) else "own"
    module = module_of(node)
    attributes = _attributes(node)
    return {
        **base, "found": True, "node": node.name, "op_type": node.op_type, "module": module, "tensor": first["tensor"],
        "attributes": attributes, "error_in": error_in, "error_out": first["max_abs"], "origin": origin,
        "unaligned_span": span, "lint_findings": _linked(lint_findings, node.name, module),
        "noise_ratio": first.get("noise_ratio"),
        "explanation": _explain(node, module, attributes, error_in, first, origin, span, base),
    }


def not_localized(pair: dict, why: str) -> dict:
    """A localization record that names no node, and says why."""
    return {"reference": pair["reference"], "candidate": pair["candidate"], "found": False, "node": None, "op_type": None,
            "module": None, "attributes": {}, "error_in": None, "error_out": None, "origin": None, "lint_findings": [],
            "explanation": why}


def _upstream(node: onnx.NodeProto, order: TensorOrder, aligned: dict) -> tuple[list[str], list[str]]:
    """Nearest aligned tensors feeding `node`, and the unaligned nodes passed on the way."""
    found, span, stack, seen = [], [], [t for t in node.input if t], set()
    while stack and len(span) < MAX_SPAN:
        tensor = stack.pop()
        if tensor in seen or tensor in order.graph_inputs or tensor not in order.producer:
            continue
        seen.add(tensor)
        if tensor in aligned:
            found.append(tensor)
            continue
        producer = order.producer[tensor]
        span.append(producer.name)
        stack.extend(t for t in producer.input if t)
    return found, span


def _attributes(node: onnx.NodeProto) -> dict:
    values = {a.name: helper.get_attribute_value(a) for a in node.attribute if a.name in ATTRIBUTE_KEYS}
    return {k: (v.decode() if isinstance(v, bytes) else v) for k, v in values.items()}


def _linked(findings: list[dict], node_name: str, module: str | None) -> list[dict]:
    return [f for f in findings if f["node"] == node_name or (module and f.get("module") == module and f["severity"] != "info")]


def _explain(node, module, attributes, error_in, first: dict, origin, span, pair) -> str:
    error_out = first["max_abs"]
    ratio = first.get("noise_ratio")
    times = f" ({ratio:.3g}x its float32 noise floor {first['noise_floor']:.3g})" if ratio is not None else ""
    what = f"{node.op_type} node '{node.name}'" + (f" (module {module})" if module else " (module not attributed)")
    attrs = ", ".join(f"{k}={v}" for k, v in attributes.items())
    if origin == "inherited":
        return (f"{what} is the first aligned tensor beyond tolerance, but its inputs already differ "
                f"(max_abs {error_in:.3g}): the error comes from earlier, unaligned nodes")
    between = f"; between its last agreeing inputs and it lie unaligned nodes {span}" if len(span) > 0 else ""
    return (f"{pair['candidate']} first departs from {pair['reference']} at {what}: its inputs agree "
            f"(max_abs {error_in:.3g}) and its output is off by {error_out:.3g}{times}, so the error appears at this node"
            f"{between}" + (f" [{attrs}]" if attrs else ""))
