"""onnx2tf 1.x's one-line tracing wrappers, called as written instead of converted by AutoGraph.

onnx2tf traces its Keras model through `lambda *inputs: model(inputs)`, twice: with tf.function for its
concrete function, and as the SavedModel's serving_default endpoint (which the pipeline wraps once more, to
key the outputs by name: onnx2tf_v1._keyed_by_name). tf.function hands each traced function to AutoGraph,
which converts it before tracing: for a lambda it parses the source around it, here onnx2tf's 6,600-line
module. That was 0.4-0.5 s of every run's first conversion (seed_ym's whole conversion: 1.1 s), once per
process (a second conversion in the same process found it cached).

These wrappers hold nothing for AutoGraph to convert: a call of the model, and the pipeline's dict of its
outputs. Marked as AutoGraph artifacts (the mark tf.function's own wrappers carry), AutoGraph calls them as
they are; the model's call inside is the one AutoGraph would have made (it never converts a tf_keras
model), and its layers' calls are converted by the same rule as before (tf_keras converts a layer's
`call` unless AutoGraph is disabled, which this does not do). The traced graphs are the same
(tests/converters/test_onnx2tf_v1_trace.py: the same operations by name and type, in order, and the same
TFLite operators, tensors and weights and SavedModel operations and outputs).
Where TensorFlow lacks the mark, nothing changes.
"""
from __future__ import annotations

import contextlib
from typing import Callable, Iterator

from pipeline.patching import Overlay, optional_module, replaced


@contextlib.contextmanager
def wrappers_as_written() -> Iterator[None]:
    """During onnx2tf's convert(): each function its module hands to tf.function is called as written."""
    import onnx2tf.onnx2tf as module

    if _artifact_mark() is None:
        yield
        return
    with replaced(module, "tf", Overlay(module.tf, function=_marking(module.tf.function))):
        yield


def as_written(fn: Callable) -> Callable:
    """fn, marked for AutoGraph to call it as written (see the module docstring)."""
    mark = _artifact_mark()
    return mark(fn) if mark is not None else fn


def _artifact_mark() -> Callable | None:
    return getattr(optional_module("tensorflow.python.autograph.impl.api"), "autograph_artifact", None)


def _marking(function: Callable) -> Callable:
    """tf.function, marking the function it is given."""
    def marked(func=None, *args, **kwargs):
        return function(None if func is None else as_written(func), *args, **kwargs)

    return marked
