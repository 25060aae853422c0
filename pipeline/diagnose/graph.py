"""Small questions about a Keras port's graph: who feeds a layer, who reads it."""
from __future__ import annotations


def producer(layer):
    """The layer or operation whose output this layer reads (its first input), or None."""
    try:
        tensor = layer.input
    except (AttributeError, ValueError):
        return None
    tensor = tensor[0] if isinstance(tensor, (list, tuple)) else tensor
    history = getattr(tensor, "_keras_history", None)
    return history.operation if history else None


def consumers(model, layer) -> list:
    """Layers and operations that read this layer's output."""
    found = []
    for op in model.operations:
        for node in getattr(op, "_inbound_nodes", []):
            if any(getattr(t, "_keras_history", None) and t._keras_history.operation is layer for t in node.input_tensors):
                found.append(op)
                break
    return found


def input_shape(layer) -> tuple:
    try:
        tensor = layer.input
    except (AttributeError, ValueError):
        return ()
    tensor = tensor[0] if isinstance(tensor, (list, tuple)) else tensor
    return tuple(tensor.shape)


def output_shape(layer) -> tuple:
    try:
        return tuple(layer.output.shape)
    except (AttributeError, ValueError):
        return ()
