"""Localization: the first node where two backends part ways, and why.

Walks the aligned intermediate tensors of a backend pair in graph order and stops at
the first one beyond tolerance. Its node's inputs are traced back to the nearest
aligned tensors: if one of those already differs, the error was inherited; if they
agree and feed the node directly, the error is the node's own; if unaligned nodes lie
between (tensors that were never compared), the place is that span, from its first node
to the node that diverged, and no claim is made about the inputs of the node.
"""
from __future__ import annotations

from typing import Callable

import onnx
from onnx import helper

from pipeline.model.graph import TensorOrder

ATTRIBUTE_KEYS = ("epsilon", "pads", "strides", "kernel_shape", "dilations", "group", "auto_pad",
                  "ceil_mode", "count_include_pad", "mode", "alpha", "axis")
MAX_SPAN = 500  # unaligned nodes traced back before the search stops (and the record says it did)


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
    upstream, span, complete = _upstream(node, order, by_name)
    error_in = max((by_name[u]["max_abs"] for u in upstream), default=None)  # None: no input was compared
    scale_in = max((by_name[u].get("ref_max_abs") or 0.0 for u in upstream), default=0.0)
    if any(by_name[u]["exceeds"] for u in upstream):
        origin = "inherited"
    else:
        origin = "span" if span or not complete else "own"
    span = _in_graph_order(span, order)
    nodes = {n.name: n for n in order.producer.values()}
    place = nodes[span[0]] if origin == "span" else node
    module = module_of(place)
    attributes = _attributes(place)
    suspects = {place.name, node.name, *(span if origin == "span" else [])}
    return {
        **base, "found": True, "node": place.name, "op_type": place.op_type, "module": module, "tensor": first["tensor"],
        "attributes": attributes, "error_in": error_in, "error_out": first["max_abs"], "origin": origin,
        "unaligned_span": span, "span_complete": complete, "diverging_node": node.name,
        "lint_findings": _linked(lint_findings, suspects, {module_of(nodes[n]) for n in suspects}),
        "noise_ratio": first.get("noise_ratio"),
        "explanation": _explain(node, place, module_of, attributes, (error_in, scale_in), first, origin, span, complete,
                                base),
    }


def not_localized(pair: dict, why: str) -> dict:
    """A localization record that names no node, and says why."""
    return {"reference": pair["reference"], "candidate": pair["candidate"], "found": False, "node": None, "op_type": None,
            "module": None, "attributes": {}, "error_in": None, "error_out": None, "origin": None, "lint_findings": [],
            "explanation": why}


def _upstream(node: onnx.NodeProto, order: TensorOrder, aligned: dict) -> tuple[list[str], list[str], bool]:
    """Nearest aligned tensors feeding `node`, the unaligned nodes passed on the way, and whether the
    search reached every path (False when it stopped after MAX_SPAN nodes)."""
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
        if producer.name not in span:
            span.append(producer.name)
        stack.extend(t for t in producer.input if t)
    return found, span, not stack


def _in_graph_order(names: list[str], order: TensorOrder) -> list[str]:
    position = {order.producer[t].name: i for i, t in reversed(list(enumerate(order.tensors)))}
    return sorted(names, key=lambda name: position.get(name, -1))


def _attributes(node: onnx.NodeProto) -> dict:
    values = {a.name: helper.get_attribute_value(a) for a in node.attribute if a.name in ATTRIBUTE_KEYS}
    return {k: (v.decode() if isinstance(v, bytes) else v) for k, v in values.items()}


def _linked(findings: list[dict], nodes: set[str], modules: set[str | None]) -> list[dict]:
    return [f for f in findings if f["node"] in nodes or (f.get("module") in modules - {None} and f["severity"] != "info")]


def _what(node, module_of) -> str:
    module = module_of(node)
    return f"{node.op_type} node '{node.name}'" + (f" (module {module})" if module else " (module not attributed)")


def _explain(node, place, module_of, attributes, inputs: tuple, first: dict, origin, span, complete, pair) -> str:
    error_out = first["max_abs"]
    error_in, scale_in = inputs
    # "agree" means within the rule each tensor is judged by: the scale shows why a large max_abs still agrees
    of_scale = f" at a scale of {scale_in:.3g}" if error_in and scale_in else ""
    ratio = first.get("noise_ratio")
    times = f" ({ratio:.3g}x its float32 noise floor {first['noise_floor']:.3g})" if ratio is not None else ""
    what = _what(node, module_of)
    attrs = ", ".join(f"{k}={v}" for k, v in attributes.items())
    if origin == "inherited":
        return (f"{what} is the first aligned tensor beyond tolerance, but its inputs already differ "
                f"(max_abs {error_in:.3g}): the error comes from earlier, unaligned nodes")
    departs = f"{pair['candidate']} first departs from {pair['reference']} at {what}: its output is off by {error_out:.3g}{times}"
    if origin == "own":
        agree = f"its inputs agree (max_abs {error_in:.3g}{of_scale})" if error_in is not None else "its inputs are the model inputs"
        return (f"{departs}; {agree}, so the error appears at this node"
                + (f" [{attrs}]" if attrs else ""))
    count = f"{len(span)}" + ("" if complete else f" or more (the search stopped after {MAX_SPAN})")
    before = (f"the nearest aligned tensors before them agree (max_abs {error_in:.3g}{of_scale})" if error_in is not None
              else "no aligned tensor before them was compared")
    return (f"{departs}; the {count} nodes before it, {_what(place, module_of)} .. '{span[-1]}', have no aligned tensor "
            f"and were not compared ({before}): the error appears in that span, from its first node '{place.name}', "
            f"or at '{node.name}'" + (f" [{attrs}]" if attrs else ""))
