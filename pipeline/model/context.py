"""The ONNX graph beside the PyTorch model it came from: constants, shapes, module attribution
and the module call graph. Lint rules, the audit's localization and conversion errors all read it."""
from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import numpy as np
import onnx
from onnx import helper, numpy_helper

from pipeline.model.attribution import Attribution, Attributor
from pipeline.model.graph import static_shapes

OP_MODULES = {"Conv": ("Conv1d", "Conv2d", "Conv3d"), "ConvTranspose": ("ConvTranspose1d", "ConvTranspose2d", "ConvTranspose3d")}


@dataclass
class ModelContext:
    model: onnx.ModelProto
    torch_model: "torch.nn.Module | None" = None  # noqa: F821
    example_args: tuple = ()
    from_pytorch: bool = True  # the ONNX file claims a PyTorch exporter, or we exported it

    @property
    def nodes(self) -> list[onnx.NodeProto]:
        return list(self.model.graph.node)

    @cached_property
    def constants(self) -> dict[str, np.ndarray]:
        """Initializers and Constant-node outputs, as numpy arrays."""
        values = {init.name: numpy_helper.to_array(init) for init in self.model.graph.initializer}
        for node in self.model.graph.node:
            if node.op_type == "Constant" and node.attribute:
                value = helper.get_attribute_value(node.attribute[0])
                if isinstance(value, onnx.TensorProto):
                    values[node.output[0]] = numpy_helper.to_array(value)
        return values

    def constant(self, name: str) -> np.ndarray | None:
        return self.constants.get(name)

    @cached_property
    def shapes(self) -> dict[str, list[int]]:
        return static_shapes(self.model)

    def shape_of(self, name: str) -> list[int] | None:
        return self.shapes.get(name)

    @staticmethod
    def attrs(node: onnx.NodeProto) -> dict:
        return {a.name: _decode(helper.get_attribute_value(a)) for a in node.attribute}

    @cached_property
    def modules(self) -> dict:
        return dict(self.torch_model.named_modules()) if self.torch_model is not None else {}

    @cached_property
    def attributor(self) -> Attributor:
        types = {path: type(m).__name__ for path, m in self.modules.items() if path}
        params = {}
        if self.torch_model is not None:
            params = {k: v.detach().cpu().numpy() for k, v in self.torch_model.state_dict().items() if v.is_floating_point()}
        graph = self.model.graph
        names = {i.name for i in graph.initializer} | {v for n in graph.node for v in (*n.input, *n.output)}
        return Attributor(types, params, self.constant, frozenset(names))

    @property
    def has_modules(self) -> bool:
        """Rules that compare with modules yield nothing without a PyTorch model (the stage notes it once)."""
        return self.torch_model is not None

    def attribute(self, node: onnx.NodeProto, want: tuple[str, ...] = ()) -> Attribution:
        if self.torch_model is None:
            return Attribution(None, "none", "no PyTorch model to attribute to")
        return self.attributor.attribute(node, want)

    @cached_property
    def trace(self):
        from pipeline.model.torch_trace import ModuleTrace, trace_modules

        return trace_modules(self.torch_model, self.example_args) if self.torch_model is not None else ModuleTrace()

    @property
    def module_edges(self) -> list[tuple[str, str]]:
        """(producer, consumer) module paths where the consumer takes the producer's output directly."""
        return self.trace.edges

    def edges_of(self, producer_types: tuple, consumer_types: tuple) -> list[tuple[str, str]]:
        return [(a, b) for a, b in self.module_edges
                if isinstance(self.modules[a], producer_types) and isinstance(self.modules[b], consumer_types)]

    def module_namer(self):
        """node -> module path; a Conv with a BatchNorm folded in names both ("stem.0 + stem.1 (folded)").
        Without a PyTorch model every node's module is None."""
        if self.torch_model is None:
            return lambda node: None

        def module_of(node: onnx.NodeProto) -> str | None:
            generic = self.attribute(node).module
            if node.op_type not in OP_MODULES:
                return generic
            conv = self.attribute(node, want=OP_MODULES[node.op_type]).module
            if conv and generic and generic != conv:
                return f"{conv} + {generic} (folded)"
            return conv or generic
        return module_of


def _decode(value):
    if isinstance(value, bytes):
        return value.decode()
    if isinstance(value, list):
        return [v.decode() if isinstance(v, bytes) else v for v in value]
    return value
