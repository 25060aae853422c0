"""What onnx2tf 1.x builds, for tests that convert one ONNX file two ways and compare the graphs."""
from __future__ import annotations

import re
from pathlib import Path

from pipeline.converters import onnx2tf_v1
from pipeline.converters.base import ConversionOptions


def converted_ops(onnx_path: Path, work: Path, functions: tuple[str, ...]) -> list[str]:
    """onnx2tf 1.x's Keras model of onnx_path (no files written): each layer that calls one of `functions`
    ('transpose', 'einsum', ...), as 'function args kwargs', in order. tf_keras's automatic layer numbers
    are left out of the arguments: they count every candidate layer a search built, kept or not."""
    model = onnx2tf_v1.Onnx2TFV1()._converted(onnx_path, work, work.parent / f"{work.name}.log",
                                              ConversionOptions(outputs=("saved_model",)), save=False)
    ops = []
    for layer in model.layers:
        function = layer.get_config().get("function", "")
        if any(name in function for name in functions):
            node = layer.inbound_nodes[0]
            ops.append(re.sub(r"_\d+'", "'", f"{function} {node.call_args[1:]!r} {sorted(node.call_kwargs.items())!r}"))
    return ops


def tflite_graph(path: Path, names: bool = True) -> tuple:
    """A TFLite file's operators, tensors and constant buffers, without its metadata. Tensor names are
    scoped by the Keras model's name, which tf_keras numbers per process (model_3, then model_6): unnumbered;
    `names=False` leaves them out (two conversions in one process also number their layers apart)."""
    from tensorflow.lite.tools import flatbuffer_utils

    model = flatbuffer_utils.read_model(str(path))
    graph = model.subgraphs[0]
    codes = [model.operatorCodes[op.opcodeIndex].builtinCode for op in graph.operators]
    wiring = [(list(op.inputs), list(op.outputs)) for op in graph.operators]
    tensors = [((re.sub(rb"^model_\d+/", b"model/", t.name),) if names else ()) + (list(t.shape), t.type)
               for t in graph.tensors]
    buffers = [bytes(model.buffers[t.buffer].data) if model.buffers[t.buffer].data is not None else b"" for t in graph.tensors]
    return codes, wiring, tensors, buffers, list(graph.inputs), list(graph.outputs)
