"""onnx2tf 1.x's dummy inferences, each layer computed once per conversion.

In strict mode (its default), before it converts an op whose conversion it checks against ONNX Runtime (a
Reduce*, a Softmax, a Concat, a Reshape, a normalization: some forty ops), onnx2tf builds a Keras model from
the graph's inputs to that op's input and runs it on its dummy input (`dummy_tf_inference`): the whole graph
built so far, eagerly, layer by layer, again for every such op. The work grows with the square of the
graph. On RegNet-Y-400MF (a squeeze-excitation ReduceMean in each of 16 blocks) 43 such runs took 1.8 s of
a 10 s conversion; on MobileViT about two thirds of its 28.7 s graph.

Every run feeds the same dummy values into the same layers: the graph only grows, and onnx2tf never changes a
layer once it has built it. So while a conversion runs, each layer's outputs are kept from the first run
that computed them, for those input values (within KEPT_BYTES), and a later run computes only the layers
added since. The values are TensorFlow's own, from the same eager kernels on the same inputs, which gave the
same bits on every run measured: 12 models of the zoo and the wide zoo were converted both ways, each in a
fresh process, and their TFLite files were the same byte for byte. A layer that draws random numbers
(onnx2tf's RandomNormal*, RandomUniform*, Multinomial, Dropout) and everything computed from it runs every
time, as before.

Only `dummy_tf_inference`'s walk through the graph (tf_keras's `Functional._run_internal_graph`, of which
`_shared_walk` is a copy that looks each layer up first) is changed: onnx2tf's own input values, its call
(`training=False`) and Keras's input handling are as they were. A model with masks, inputs that are not
eager values, an error of the shared walk itself, or an onnx2tf or tf_keras other than the ones this was
checked against (CHECKED_VERSIONS, TF_KERAS_CHECKED): tf_keras's own walk runs.
"""
from __future__ import annotations

import collections
import contextlib
import hashlib
import sys
from importlib import metadata
from typing import Iterator

from pipeline.converters.onnx2tf_v1_reshape import CHECKED_VERSIONS, onnx2tf_version
from pipeline.patching import optional_module, replaced

TF_KERAS_CHECKED = ("2.21.0",)
# Input values whose layers' outputs are kept at once: the graph's dummy input, and the single-op models
# onnx2tf builds on fresh inputs in between (ReduceMean's axis search tries up to 6), oldest dropped first.
KEPT_INPUTS = 8
# At most this many bytes of layer outputs are kept in a conversion; beyond it, later layers are computed as
# onnx2tf computes them (a large input's activations stay a bounded cost in memory).
KEPT_BYTES = 1 << 30

_memo: "_Memo | None" = None  # the conversion's, while one runs
_original = None  # onnx2tf's dummy_tf_inference


@contextlib.contextmanager
def dummy_runs_shared() -> Iterator[None]:
    """During onnx2tf's convert(): each layer of its dummy inferences computed once (see the module docstring)."""
    global _memo, _original
    common = optional_module("onnx2tf.utils.common_functions")
    if common is None or not _checked():
        yield
        return
    if _original is None:
        _original = common.dummy_tf_inference
    with contextlib.ExitStack() as stack:
        # Op modules onnx2tf imports during the conversion bind the replacement from common_functions; those
        # imported before hold the original. A module keeps the replacement afterwards: without a memo it is
        # onnx2tf's own.
        for module in [common, *_importers()]:
            stack.enter_context(replaced(module, "dummy_tf_inference", dummy_tf_inference))
        _memo = _Memo()
        try:
            yield
        finally:
            _memo = None


def _checked() -> bool:
    try:
        keras = metadata.version("tf_keras")
    except metadata.PackageNotFoundError:
        return False
    return onnx2tf_version() in CHECKED_VERSIONS and keras in TF_KERAS_CHECKED


def _importers() -> list:
    return [m for name, m in list(sys.modules.items())
            if name.startswith("onnx2tf.ops.") and getattr(m, "dummy_tf_inference", None) is _original]


def dummy_tf_inference(*args, **kwargs):
    """onnx2tf's dummy_tf_inference, whose model walks its graph through the conversion's memo."""
    memo, model = _memo, kwargs.get("model")
    if memo is None or model is None or not hasattr(model, "_nodes_by_depth"):
        return _original(*args, **kwargs)
    with memo.serving(model):
        return _original(*args, **kwargs)


class _Value:
    """A computed tensor as tf_keras's walk holds it: `pop()` gives it (there, once per use; here, always)."""

    __slots__ = ("value",)

    def __init__(self, value) -> None:
        self.value = value

    def pop(self):
        return self.value


class _Memo:
    """Per input values (the input KerasTensors and their values): each node's outputs, with the node."""

    def __init__(self) -> None:
        self._kept: collections.OrderedDict = collections.OrderedDict()  # key -> _Kept
        self.kept_bytes = 0

    def keep(self, kept: "_Kept", node, outputs: list[tuple[str, object]]) -> None:
        """Keep a node's outputs, all or none, within KEPT_BYTES."""
        try:
            size = sum(value.shape.num_elements() * value.dtype.size for _, value in outputs)  # eager tensors'
        except (AttributeError, TypeError):  # not a tensor, or one of unknown size: computed again when needed
            return
        if self.kept_bytes + size > KEPT_BYTES:
            return
        self.kept_bytes += size
        kept.bytes += size
        kept.values.update({x_id: (node, value) for x_id, value in outputs})

    @contextlib.contextmanager
    def serving(self, model) -> Iterator[None]:
        object.__setattr__(model, "_run_internal_graph", lambda inputs, training=None, mask=None:
                           self._walk(model, inputs, training, mask))
        try:
            yield
        finally:
            object.__delattr__(model, "_run_internal_graph")

    def _walk(self, model, inputs, training, mask):
        """The shared walk; onnx2tf's own where it cannot be used. onnx2tf calls dummy_tf_inference inside
        `try: ... except: pass`, so an error of this walk must never reach it: it would silently skip a check.
        A layer's own error is raised again by tf_keras's walk, as it would have been."""
        functional = type(model)._run_internal_graph
        if mask is not None:
            return functional(model, inputs, training=training, mask=mask)
        try:
            flat = model._flatten_to_reference_inputs(inputs)
            for tensor in flat:
                if tensor is not None:
                    tensor._keras_mask = None
            conformed = [model._conform_to_reference_input(y, ref_input=x) for x, y in zip(model.inputs, flat)]
            kept = self._kept_for(model.inputs, conformed)
            return _shared_walk(model, conformed, kept, self)
        except Exception:  # noqa: BLE001 - see above: tf_keras's own walk decides
            return functional(model, inputs, training=training)

    def _kept_for(self, references, values) -> "_Kept":
        """The outputs kept for these inputs (a new record if none)."""
        digest = hashlib.sha256()
        for value in values:
            array = value.numpy()  # eager: a symbolic input raises, and tf_keras's walk runs (_walk)
            digest.update(f"{array.dtype.str}{array.shape};".encode())
            digest.update(array.tobytes())
        key = (tuple(id(r) for r in references), digest.hexdigest())
        if key not in self._kept:
            self._kept[key] = _Kept(list(references))
            while len(self._kept) > KEPT_INPUTS:
                self.kept_bytes -= self._kept.popitem(last=False)[1].bytes
        self._kept.move_to_end(key)
        return self._kept[key]


class _Kept:
    """One set of input values' kept outputs: tensor id -> (node, value). The input references are held, so
    that their ids, part of the key, stay theirs; each node holds its output KerasTensors alike."""

    def __init__(self, references: list) -> None:
        self.references = references
        self.values: dict = {}
        self.bytes = 0


# Layers whose outputs differ from run to run (onnx2tf's RandomNormal*, RandomUniform*, Multinomial, Dropout):
# never kept, and neither is anything computed from them.
RANDOM_SYMBOLS = ("random", "dropout", "categorical")


def _draws(layer) -> bool:
    symbol = (getattr(layer, "symbol", None) or type(layer).__name__).lower()
    return any(word in symbol for word in RANDOM_SYMBOLS)


def _shared_walk(model, inputs: list, kept: _Kept, memo: _Memo):
    """tf_keras 2.21's Functional._run_internal_graph (masks aside), each node's outputs looked up in `kept`
    before the node is called, and kept there after (memo.keep); a node that draws random numbers, or is
    computed from one that did, is called every time and never kept."""
    import tensorflow as tf

    tensors = {str(id(x)): _Value(y) for x, y in zip(model.inputs, inputs)}
    drawn: set[str] = set()  # this walk's tensors that depend on a random draw
    for depth in sorted(model._nodes_by_depth, reverse=True):
        for node in model._nodes_by_depth[depth]:
            if node.is_input:
                continue
            outputs = node.flat_output_ids
            found = [kept.values.get(x_id) for x_id in outputs]
            if all(entry is not None and entry[0] is node for entry in found):
                tensors.update({x_id: _Value(entry[1]) for x_id, entry in zip(outputs, found)})
                continue
            if any(t_id not in tensors for t_id in node.flat_input_ids):
                continue  # not computable from these inputs
            args, kwargs = node.map_arguments(tensors)
            computed = list(zip(outputs, tf.nest.flatten(node.layer(*args, **kwargs))))
            tensors.update({x_id: _Value(y) for x_id, y in computed})
            if _draws(node.layer) or any(t_id in drawn for t_id in node.flat_input_ids):
                drawn.update(outputs)
            else:
                memo.keep(kept, node, computed)
    results = []
    for x in model.outputs:
        x_id = str(id(x))
        assert x_id in tensors, "Could not compute output " + str(x)
        results.append(tensors[x_id].pop())
    return tf.nest.pack_sequence_as(model._nested_outputs, results)
