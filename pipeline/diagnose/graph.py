"""Small questions about a Keras port's graph: who feeds a layer, and its shapes."""
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
