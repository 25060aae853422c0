"""Repair candidates around the first divergence, most likely first.

The audit's localization names the first node where the TF layer model departs and the
unaligned nodes between it and the last agreeing tensors (`span`). A layout bug in onnx2tf
lives there: a Transpose whose perm it adapted to its NHWC bookkeeping wrongly, or an op whose
output it left in the wrong layout. Candidates, in order:

1. every Transpose in the span with the identity perm at once (the layout transposes cancel
   against onnx2tf's own), then each alone;
2. onnx's expansion of the function ops in the span (LayerNormalization, …) into primitive ops;
3. the other perms a layout mix-up suggests (the ONNX perm, its inverse, NCHW<->NHWC) per Transpose;
4. a transpose after the divergent node's output (onnx2tf's `post_process_transpose_perm`);
5. the conversion strategies not yet used (no onnxsim, channel-first inputs, onnx2tf's own search).

Replacement entries use onnx2tf's parameter-replacement format; the search writes them to a file.
"""
from __future__ import annotations

import dataclasses
import itertools
from dataclasses import dataclass, field

import onnx
from onnx import helper

from pipeline.convert.repair.record import Divergence
from pipeline.convert.rewrite import EXPANDED
from pipeline.convert.stage import Strategy, strategies
from pipeline.inputs import TensorSpec

MAX_TRANSPOSES = 3
HOPS = 3  # how far from the divergence a Transpose still counts as part of the same layout round trip  # perm products beyond this many nodes grow too fast to be worth a conversion each


@dataclass(frozen=True)
class Candidate:
    """One repair to try: replacement entries on the base strategy, or another strategy."""

    name: str
    kind: str  # "transpose-perm" | "output-transpose" | "rewrite" | "strategy"
    why: str
    entries: list[dict] = field(default_factory=list)
    strategy: Strategy | None = None  # None: the base strategy with `entries` as a replacement file


def candidates(model: onnx.ModelProto, divergences: list[Divergence], base: Strategy, specs: list[TensorSpec],
               failed: tuple[str, ...] = ()) -> list[Candidate]:
    """Every candidate for these divergences (of the converted graph `model`), most likely first, once each;
    strategies named in `failed` (they raised in the convert stage already) are left out."""
    nodes = _span_nodes(model, divergences)
    divergent = [n for d in divergences for n in nodes if n.name == d.node]  # the finer localization first
    near = _near(model, divergent, HOPS)
    transposes = [n for n in model.graph.node if n.op_type == "Transpose" and (n in nodes or n.name in near)][:MAX_TRANSPOSES]
    listed = (_identity_perms(transposes) + _output_transposes(divergent, model) + _rewrites(nodes, model, base)
              + _other_perms(transposes) + _strategies(base, specs, failed))
    seen, unique = set(), []
    for candidate in listed:
        key = (repr(candidate.entries), candidate.strategy.name if candidate.strategy else None)
        if key not in seen:
            seen.add(key)
            unique.append(candidate)
    return unique


def _span_nodes(model: onnx.ModelProto, divergences: list[Divergence]) -> list[onnx.NodeProto]:
    """The divergent nodes and the unaligned nodes before them, in graph order; the whole graph when
    nothing was localized (no layer model, or no aligned tensor departs)."""
    names = {name for d in divergences if d.node for name in (d.node, *d.span)}
    found = [n for n in model.graph.node if n.name in names]
    return found or list(model.graph.node)


def _near(model: onnx.ModelProto, start: list[onnx.NodeProto], hops: int) -> set[str]:
    """Names of the nodes within `hops` producer/consumer steps of `start`: the Transposes that move
    a tensor into and out of a channels-last op sit next to each other around it."""
    producer = {t: n for n in model.graph.node for t in n.output}
    consumers: dict[str, list[onnx.NodeProto]] = {}
    for node in model.graph.node:
        for tensor in node.input:
            consumers.setdefault(tensor, []).append(node)
    reached, frontier = {n.name for n in start}, list(start)
    for _ in range(hops):
        step = [producer[t] for n in frontier for t in n.input if t in producer]
        step += [c for n in frontier for t in n.output for c in consumers.get(t, [])]
        frontier = [n for n in step if n.name not in reached]
        reached |= {n.name for n in frontier}
    return reached


def _perm_entry(node: onnx.NodeProto, perm: list[int]) -> dict:
    return {"op_name": node.name, "param_target": "attributes", "param_name": "perm", "values": list(perm)}


def _perm(node: onnx.NodeProto) -> list[int]:
    return next(list(helper.get_attribute_value(a)) for a in node.attribute if a.name == "perm")


def _identity_perms(transposes: list[onnx.NodeProto]) -> list[Candidate]:
    out = []
    if len(transposes) > 1:
        names = ", ".join(n.name for n in transposes)
        out.append(Candidate(f"identity-perm:{'+'.join(n.name for n in transposes)}", "transpose-perm",
                             f"the layout transposes {names} cancel against onnx2tf's own NHWC handling",
                             [_perm_entry(n, list(range(len(_perm(n))))) for n in transposes]))
    for node in transposes:
        out.append(Candidate(f"identity-perm:{node.name}", "transpose-perm",
                             f"Transpose {node.name} (perm {_perm(node)}) is already applied by onnx2tf's layout change",
                             [_perm_entry(node, list(range(len(_perm(node)))))]))
    return out


def _layout_perms(perm: list[int]) -> list[list[int]]:
    """Perms a channel-first/channel-last mix-up could call for, the identity excluded."""
    rank = len(perm)
    inverse = sorted(range(rank), key=lambda i: perm[i])
    to_last = [0, *range(2, rank), 1]
    to_first = [0, rank - 1, *range(1, rank - 1)]
    choices = []
    for choice in (perm, inverse, to_last, to_first):
        if choice != list(range(rank)) and choice not in choices:
            choices.append(choice)
    return choices


def _other_perms(transposes: list[onnx.NodeProto]) -> list[Candidate]:
    """Each Transpose alone with each layout perm, then all of them together over the product."""
    out = []
    for node in transposes:
        for perm in _layout_perms(_perm(node)):
            out.append(Candidate(f"perm{perm}:{node.name}".replace(" ", ""), "transpose-perm",
                                 f"Transpose {node.name} with perm {perm}: a channel-first/last mix-up", [_perm_entry(node, perm)]))
    if len(transposes) > 1:
        choices = [[list(range(len(_perm(n))))] + _layout_perms(_perm(n)) for n in transposes]
        for combo in itertools.product(*choices):
            entries = [_perm_entry(n, p) for n, p in zip(transposes, combo)]
            name = "perms:" + "+".join(f"{n.name}{p}" for n, p in zip(transposes, combo)).replace(" ", "")
            out.append(Candidate(name, "transpose-perm", "a joint layout fix of the Transposes in the span", entries))
    return out


def _rewrites(nodes: list[onnx.NodeProto], model: onnx.ModelProto, base: Strategy) -> list[Candidate]:
    local = sorted({n.op_type for n in nodes if n.op_type in EXPANDED})
    anywhere = sorted({n.op_type for n in model.graph.node if n.op_type in EXPANDED})
    if not anywhere or base.rewrite:
        return []
    ops = ", ".join(local or anywhere)
    where = "at the divergence" if local else "elsewhere in the graph"
    strategy = dataclasses.replace(base, name="rewrite-function-ops", rewrite=True,
                                   why=f"onnx's own expansion of {ops} ({where}) into primitive ops")
    return [Candidate("rewrite-function-ops", "rewrite", strategy.why, [], strategy)]


def _output_transposes(divergent: list[onnx.NodeProto], model: onnx.ModelProto) -> list[Candidate]:
    """A divergent node's output transposed after onnx2tf built it (left in the other layout)."""
    return [c for node in divergent if node.op_type != "Transpose" and node.output for c in _output_transpose(node, model)]


def _output_transpose(node: onnx.NodeProto, model: onnx.ModelProto) -> list[Candidate]:
    rank = _rank(model, node.output[0])
    if rank not in (3, 4, 5):
        return []
    perms = ([0, *range(2, rank), 1], [0, rank - 1, *range(1, rank - 1)])
    return [Candidate(f"output-perm{list(p)}:{node.name}".replace(" ", ""), "output-transpose",
                      f"{node.op_type} {node.name}'s output left in the other layout",
                      [{"op_name": node.name, "param_target": "outputs", "param_name": node.output[0],
                        "post_process_transpose_perm": list(p)}]) for p in perms]


def _rank(model: onnx.ModelProto, tensor: str) -> int | None:
    inferred = onnx.shape_inference.infer_shapes(model)
    for value in list(inferred.graph.value_info) + list(inferred.graph.output):
        if value.name == tensor and value.type.tensor_type.HasField("shape"):
            return len(value.type.tensor_type.shape.dim)
    return None


def _strategies(base: Strategy, specs: list[TensorSpec], failed: tuple[str, ...]) -> list[Candidate]:
    return [Candidate(s.name, "strategy", s.why, [], s) for s in strategies(specs)
            if s.name != base.name and s.name not in failed and not s.rewrite]
