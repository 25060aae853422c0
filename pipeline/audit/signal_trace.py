"""Where the signal dies or blows up, from ONNX Runtime's intermediate tensors.

Run when an output is inconclusive for lack of signal. Vanishing is traced backwards
from the output along the largest input of each node, to the first node whose output
falls below VANISH while its input did not: a tiny mask elsewhere in the graph cannot
be blamed. Blow-ups are the first non-finite or huge tensor in graph order.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx

from pipeline.inputs import Feed, TensorSpec
from pipeline.model.graph import TensorOrder
from pipeline.runners.intermediates import onnx_intermediates_runner, temp_workdir

VANISH = 1e-12
EXPLODE = 1e30
ADVICE = "a randomly initialised model? calibrate BatchNorm statistics or load trained weights"


def trace(onnx_path: Path, specs: list[TensorSpec], feed: Feed, output: str, module_of) -> dict | None:
    model = onnx.load(str(onnx_path))
    order = TensorOrder.of(model)
    with temp_workdir() as workdir:
        with onnx_intermediates_runner(onnx_path, specs, Path(workdir)) as runner:
            values = runner.infer(feed)
    magnitude = {name: _magnitude(v) for name, v in values.items() if np.issubdtype(np.asarray(v).dtype, np.floating)}
    return _blow_up(order, magnitude, module_of) or _vanish(order, magnitude, output, module_of)


def _magnitude(value) -> float:
    array = np.asarray(value, dtype=np.float64)
    if array.size == 0:
        return 0.0
    return float("inf") if not np.all(np.isfinite(array)) else float(np.max(np.abs(array)))


def _blow_up(order: TensorOrder, magnitude: dict, module_of) -> dict | None:
    for name in order.tensors:
        if magnitude.get(name, 0.0) > EXPLODE:
            node = order.producer[name]
            what = "NaN or Inf" if magnitude[name] == float("inf") else f"values of {magnitude[name]:.3g}"
            return _finding("explode", node, name, magnitude[name], module_of,
                            f"activations blow up ({what}) at node {node.name}")
    return None


def _vanish(order: TensorOrder, magnitude: dict, output: str, module_of) -> dict | None:
    tensor = output
    if magnitude.get(tensor, 1.0) >= VANISH:
        return None
    for _ in range(len(order.tensors)):
        node = order.producer.get(tensor)
        if node is None:
            return None
        inputs = [t for t in node.input if t in magnitude]
        if not inputs:
            break
        upstream = max(inputs, key=lambda t: magnitude[t])
        if magnitude[upstream] >= VANISH:
            break
        tensor = upstream
    node = order.producer[tensor]
    return _finding("vanish", node, tensor, magnitude[tensor], module_of,
                    f"activations fall below {VANISH:g} after node {node.name}")


def _finding(kind: str, node: onnx.NodeProto, tensor: str, value: float, module_of, what: str) -> dict:
    module = module_of(node)
    where = f" ({node.op_type}" + (f", module {module})" if module else ")")
    return {"kind": kind, "node": node.name, "op_type": node.op_type, "module": module, "tensor": tensor,
            "magnitude": value, "message": f"{what}{where}: {ADVICE}"}
