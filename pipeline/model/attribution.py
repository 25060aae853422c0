"""Which PyTorch module an ONNX node came from.

In order of trust:
1. the dynamo exporter's node metadata `pkg.torch.onnx.name_scopes`;
2. scoped node names, as the TorchScript exporter writes them (`/layer1/layer1.0/bn1/BatchNormalization`);
   then initializer names that are parameter names (`layer1.0.conv1.weight`, as dynamo writes them);
3. matching the node's initializer values to module parameters and buffers,
   which works for any exporter, even after renaming.
When none of these gives exactly one module, the attribution says so; it never guesses.
"""
from __future__ import annotations

import ast
from dataclasses import dataclass

import numpy as np
import onnx

NAME_SCOPES = "pkg.torch.onnx.name_scopes"


@dataclass(frozen=True)
class Attribution:
    module: str | None
    method: str  # "metadata" | "node name" | "initializer values" | "none"
    note: str = ""

    def describe(self) -> str:
        if self.module is None:
            return f"not attributed: {self.note}"
        return f"via {self.method}" + (f" ({self.note})" if self.note else "")


def scope_chain(node: onnx.NodeProto) -> list[str]:
    """Every module path a node sits in, outermost first, from metadata or a scoped node name."""
    raw = next((p.value for p in node.metadata_props if p.key == NAME_SCOPES), None)
    if raw is not None:
        try:
            return [s for s in ast.literal_eval(raw)[:-1] if s]
        except (ValueError, SyntaxError):
            return []
    chain, path = [], ""
    for part in [p for p in node.name.split("/") if p][:-1]:
        path = part if not path or part.startswith(path + ".") else f"{path}.{part}"
        chain.append(path)
    return chain


class Attributor:
    """Maps ONNX nodes to module paths of a given PyTorch model (or of none)."""

    def __init__(self, module_types: dict[str, str], parameters: dict[str, np.ndarray], initializers,
                 graph_names: frozenset[str] = frozenset()) -> None:
        self.module_types = module_types  # module path -> class name
        self.parameters = parameters  # "path.weight" -> values
        self.initializers = initializers  # callable: name -> np.ndarray | None
        self.graph_names = graph_names  # every value name in the graph (initializers, node inputs and outputs)

    def attribute(self, node: onnx.NodeProto, want: tuple[str, ...] = ()) -> Attribution:
        """`want` restricts to modules of these class names (e.g. ("BatchNorm2d",))."""
        for method in (self._from_metadata, self._from_node_name, self._from_initializer_names, self._from_values):
            found = method(node, want)
            if found is not None:
                return found
        return Attribution(None, "none", "no name-scope metadata, no scoped node name, and no parameter matched its initializers")

    def _accept(self, path: str, want: tuple[str, ...]) -> bool:
        # Subclasses and look-alikes count too: transformers' ConvNextLayerNorm is a LayerNorm.
        kind = self.module_types.get(path)
        return kind is not None and (not want or any(w in kind for w in want))

    def _from_metadata(self, node: onnx.NodeProto, want: tuple[str, ...]) -> Attribution | None:
        raw = next((p.value for p in node.metadata_props if p.key == NAME_SCOPES), None)
        if raw is None:
            return None
        try:
            scopes = [s for s in ast.literal_eval(raw) if s]
        except (ValueError, SyntaxError):
            return None
        for scope in reversed(scopes):
            if self._accept(scope, want):
                return Attribution(scope, "metadata")
        return None

    def _from_node_name(self, node: onnx.NodeProto, want: tuple[str, ...]) -> Attribution | None:
        parts = [p for p in node.name.split("/") if p][:-1]
        if not parts:
            return None
        path = ""
        for part in parts:
            path = part if not path or part.startswith(path + ".") else f"{path}.{part}"
        return Attribution(path, "node name") if self._accept(path, want) else None

    def _from_initializer_names(self, node: onnx.NodeProto, want: tuple[str, ...]) -> Attribution | None:
        # The dynamo exporter names initializers after parameters ("layer1.0.conv1.weight"),
        # also when it folded other values into them.
        named = [name for name in node.input[1:] if name in self.parameters]
        owners = {name.rsplit(".", 1)[0] for name in named}
        owners = {owner for owner in owners if self._accept(owner, want)}
        if len(owners) != 1:
            return None
        # It also merges initializers with equal values into one name: when another module's parameter
        # has these values and no value of its own in the graph, the name is no evidence.
        candidates = owners | self._merged_into(named, want)
        if len(candidates) > 1:
            note = f"ambiguous: initializers {named} may stand for equal parameters of {sorted(candidates)}"
            return Attribution(None, "none", note)
        return Attribution(owners.pop(), "initializer names")

    def _merged_into(self, names: list[str], want: tuple[str, ...]) -> set[str]:
        """Modules whose parameter equals one of these initializers but appears nowhere in the graph."""
        merged: set[str] = set()
        for name in names:
            values = self.initializers(name)
            if values is None:
                continue
            merged |= {key.rsplit(".", 1)[0] for key, param in self.parameters.items()
                       if key not in self.graph_names and param.shape == values.shape and np.array_equal(param, values)}
        return {m for m in merged if self._accept(m, want)}

    def _from_values(self, node: onnx.NodeProto, want: tuple[str, ...]) -> Attribution | None:
        """The one module holding every initializer of the node. Modules of any class count
        when deciding ambiguity: freshly initialised norms all share gamma=1, beta=0."""
        matches: set[str] | None = None
        for name in node.input[1:]:
            values = self.initializers(name)
            if values is None:
                continue
            owners = {key.rsplit(".", 1)[0] for key, param in self.parameters.items()
                      if param.shape == values.shape and np.array_equal(param, values)}
            matches = owners if matches is None else matches & owners
        if not matches:
            return None
        if len(matches) > 1:
            listed = sorted(matches)
            more = f" and {len(listed) - 5} more" if len(listed) > 5 else ""
            return Attribution(None, "none", f"ambiguous: initializers match {listed[:5]}{more}")
        only = matches.pop()
        return Attribution(only, "initializer values") if self._accept(only, want) else None


def module_tensors(model: onnx.ModelProto, module_paths: set[str]) -> dict[str, str]:
    """Module path -> the ONNX tensor holding its output (the last one made inside its scope)."""
    last: dict[str, str] = {}
    for node in model.graph.node:
        for path in scope_chain(node):
            if path in module_paths and node.output:
                last[path] = node.output[0]
    return last
