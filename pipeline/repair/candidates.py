"""Repair candidates around the first divergence, most likely first.

The audit's localization names the first node where the TF layer model departs and the
unaligned nodes between it and the last agreeing tensors (`span`). A layout bug in onnx2tf
lives there: a Transpose whose perm it adapted to its NHWC bookkeeping wrongly, or an op whose
output it left in the wrong layout. Candidates, in order:

0. the other converter (onnx2tf 2.x when 1.x made the model): its own route, no layout patch;
1. every Transpose in the span (or within a few nodes of the divergence) with the identity perm
   at once (the layout transposes cancel against onnx2tf's own), then each alone;
2. the divergent node's output transposed after it, or its input before it (onnx2tf's
   `post_process_transpose_perm` / `pre_process_transpose_perm`);
3. onnx's expansion of the function ops (LayerNormalization, …) into primitive ops;
4. the other perms a layout mix-up suggests (the ONNX perm, its inverse, NCHW<->NHWC) per Transpose;
5. the conversion strategies not yet used (no onnxsim, channel-first inputs, onnx2tf's own search).

Replacement entries use onnx2tf's parameter-replacement format; the search writes them to a file.
"""
from __future__ import annotations

import dataclasses
import itertools
from dataclasses import dataclass, field

import onnx
from onnx import helper

from pipeline.artifacts.repair_record import Divergence
from pipeline.convert.rewrite import EXPANDED
from pipeline.convert.stage import Strategy, strategies
from pipeline.inputs import TensorSpec

MAX_TRANSPOSES = 3
HOPS = 3  # how far from a divergent Transpose its partner in the same layout round trip may sit  # perm products beyond this many nodes grow too fast to be worth a conversion each


@dataclass(frozen=True)
class Candidate:
    """One repair to try: replacement entries on the base strategy, or another strategy."""

    name: str
    kind: str  # "transpose-perm" | "output-transpose" | "input-transpose" | "rewrite" | "strategy"
    why: str
    entries: list[dict] = field(default_factory=list)
    strategy: Strategy | None = None  # None: the base strategy with `entries` as a replacement file


def candidates(model: onnx.ModelProto, divergences: list[Divergence], base: Strategy, specs: list[TensorSpec],
               failed: tuple[str, ...] = ()) -> list[Candidate]:
    """Every candidate for these divergences (of the converted graph `model`), most likely first, once each;
    strategies named in `failed` (they raised in the convert stage already) are left out."""
    nodes = _span_nodes(model, divergences)
    divergent = [n for d in divergences for n in nodes if n.name == d.node]  # the finer localization first
    pair = _round_trip(model, divergent)
    transposes = [n for n in model.graph.node if n.op_type == "Transpose" and (n in nodes or n in pair)][:MAX_TRANSPOSES]
    listed = (_second_converter(base, specs, failed) + _identity_perms(pair, transposes) + _output_transposes(divergent, model)
              + _rewrites(nodes, model, base) + _other_perms(transposes) + _strategies(base, specs, failed))
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


def _round_trip(model: onnx.ModelProto, divergent: list[onnx.NodeProto]) -> list[onnx.NodeProto]:
    """The divergent Transpose and its partner: the nearest Transpose before it (within HOPS nodes),
    else after it. A permute into channels-last and the one back out sit around the same op."""
    first = next((n for n in divergent if n.op_type == "Transpose"), None)
    if first is None:
        return []
    producer = {t: n for n in model.graph.node for t in n.output}
    consumers: dict[str, list[onnx.NodeProto]] = {}
    for node in model.graph.node:
        for tensor in node.input:
            consumers.setdefault(tensor, []).append(node)
    for step in (lambda n: [producer[t] for t in n.input if t in producer],
                 lambda n: [c for t in n.output for c in consumers.get(t, [])]):
        frontier = [first]
        for _ in range(HOPS):
            frontier = [m for n in frontier for m in step(n)]
            partner = next((m for m in frontier if m.op_type == "Transpose"), None)
            if partner is not None:
                return sorted([first, partner], key=list(model.graph.node).index)
    return [first]


def _perm_entry(node: onnx.NodeProto, perm: list[int]) -> dict:
    return {"op_name": node.name, "param_target": "attributes", "param_name": "perm", "values": list(perm)}


def _perm(node: onnx.NodeProto) -> list[int]:
    return next(list(helper.get_attribute_value(a)) for a in node.attribute if a.name == "perm")


def _identity_perms(pair: list[onnx.NodeProto], transposes: list[onnx.NodeProto]) -> list[Candidate]:
    """The round trip at the divergence with identity perms, then each Transpose alone, then all together."""
    groups = [pair] if len(pair) > 1 else []
    groups += [[n] for n in transposes]
    groups += [transposes] if len(transposes) > 2 else []
    return [_identity(group) for group in groups]


def _identity(group: list[onnx.NodeProto]) -> Candidate:
    entries = [_perm_entry(n, list(range(len(_perm(n))))) for n in group]
    if len(group) == 1:
        why = f"Transpose {group[0].name} (perm {_perm(group[0])}) is already applied by onnx2tf's layout change"
    else:
        why = f"the layout transposes {', '.join(n.name for n in group)} cancel against onnx2tf's own NHWC handling"
    return Candidate(f"identity-perm:{'+'.join(n.name for n in group)}", "transpose-perm", why, entries)


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
    """Its output transposed after it (`post_process_transpose_perm`), then its first input transposed
    before it (`pre_process_transpose_perm`: a Reshape or Flatten that reads NHWC data in NCHW order)."""
    out = [Candidate(f"output-perm{p}:{node.name}".replace(" ", ""), "output-transpose",
                     f"{node.op_type} {node.name}'s output left in the other layout",
                     [{"op_name": node.name, "param_target": "outputs", "param_name": node.output[0],
                       "post_process_transpose_perm": p}]) for p in _swaps(_rank(model, node.output[0]))]
    if node.input and node.input[0]:
        out += [Candidate(f"input-perm{p}:{node.name}".replace(" ", ""), "input-transpose",
                          f"{node.op_type} {node.name} reads its input in the other layout",
                          [{"op_name": node.name, "param_target": "inputs", "param_name": node.input[0],
                            "pre_process_transpose_perm": p}]) for p in _swaps(_rank(model, node.input[0]))]
    return out


def _swaps(rank: int | None) -> list[list[int]]:
    """Channel-first to channel-last and back, for 3-D to 5-D tensors."""
    if rank not in (3, 4, 5):
        return []
    return [[0, *range(2, rank), 1], [0, rank - 1, *range(1, rank - 1)]]


def _rank(model: onnx.ModelProto, tensor: str) -> int | None:
    inferred = onnx.shape_inference.infer_shapes(model)
    for value in list(inferred.graph.input) + list(inferred.graph.value_info) + list(inferred.graph.output):
        if value.name == tensor and value.type.tensor_type.HasField("shape"):
            return len(value.type.tensor_type.shape.dim)
    return None


def _second_converter(base: Strategy, specs: list[TensorSpec], failed: tuple[str, ...]) -> list[Candidate]:
    """onnx2tf 2.x first: a converter of its own, not a patch of 1.x's layout bookkeeping (one conversion)."""
    return [c for c in _strategies(base, specs, failed) if c.strategy.converter != base.converter]


def _strategies(base: Strategy, specs: list[TensorSpec], failed: tuple[str, ...]) -> list[Candidate]:
    return [Candidate(s.name, "strategy", s.why, [], s) for s in strategies(specs, base.options.outputs)
            if s.name != base.name and s.name not in failed and not s.rewrite]
