"""A faster .keras load and save: the same files, the same weights and the same numbers.

Costs of tf_keras that onnx2tf's models hit hard, each removed inside a context manager:

- `skip_tracking_metadata()` (save and load). tf_keras saves and loads a .keras file's weights by
  walking every attribute of every layer and reading each one (saving_lib._walk_trackable). One of
  them, `_tracking_metadata`, serialises the whole model config to a JSON string every time it is
  read: for onnx2tf's models, a chain of a few hundred layers, that is a third to a half of the
  load (MobileNetV2: 6.4 s, 3.4 s without it). A string is never a trackable, so the walk never
  descends into it: with the attribute on tf_keras's own skip list (ATTR_SKIPLIST) the same weights
  are saved and loaded.

- `dense_constant_arguments()` (load). onnx2tf calls TF ops on constant arrays, e.g.
  `tf.gather(params=<embedding table>, indices=x)`. A .keras file stores such an array as a nested
  JSON list, and on load tf_keras turns every number of it into its own scalar tensor, which the op
  then packs back into the array: for BERT-small's 256x128 table, 32,768 constants and 292 Pack
  ops, rebuilt on every load (about 12 s), traced into every graph (about 20 s) and repacked on
  every eager call. Converting the nested list to one tensor gives the op the very array it packs
  (each number rounds to the same float32, int32 or bool), so the outputs are bit for bit those of
  the plain load (tests/test_keras_io.py compares both). It applies only where nothing can differ:
  TF-op layers (TFOpLambda) whose first argument is a rectangular nested list of plain numbers of
  one type, for ops that take one tensor there (not a list of tensors, like concat or add_n).
  Large constants given as keyword arguments (`tf.linalg.matmul(x, b=<weights>)`, and the weights
  the pipeline freezes into a Keras file onnx2tf could not save) stay the file's nested lists, but
  wrapped in one `Constant` each: tf_keras's walks over call arguments (wrapping, deserialising,
  copying, save specs) then see one value instead of millions of numbers, and the op converts it
  through TF's conversion registry to the tensor it makes of the list (numpy builds it when every
  number is a float and the op wants float32; RegNet-400MF: 3.9 million numbers, load 16 s -> 3.0 s).
  A model loaded this way keeps those `Constant`s in its call arguments: it is for running, not
  for saving again.

- `no_trial_encoding()` (save): see its docstring.

- `ancillary_layers_by_identity()` (load). After rebuilding a model, tf_keras looks for layers not
  connected to its outputs with `layer not in model.layers` for every layer, and `model.layers`
  walks the whole model each time: quadratic in the layers (RegNet-400MF's 379 layers: 0.15-0.35 s).
  One walk and a set of identities find the same layers (a layer is equal only to itself); where
  there are any, tf_keras's own function adds them.

- `constants_as_leaves()` (save). tf_keras writes a constant array of a layer call (onnx2tf passes its
  weights to TF ops as numpy arrays and constant tensors) as the array's `tolist()`, then walks that
  nested list number by number: serialising each, and deep-copying the whole config. While a model is
  saved, each large constant is one `Leaf` for those walks, written as the very numbers of its
  `tolist()`; the call arguments are the model's own again after the save.

- Fast JSON (save and load; `_dumps`, `_loads`). A .keras file's config is JSON, and onnx2tf's weights
  are in it as text: RegNet-400MF's frozen-weight file holds 3.9 million numbers (85 MB), which
  Python's json writes in 2.2 s and reads in 1.5 s. orjson writes each large constant's numbers (0.2 s)
  and reads the whole config (0.4 s). The config is the same, number for number: json reads the same
  float or int from either text (only the spacing and the notation differ, 0.00001 for 1e-05). Where
  orjson would read or write a number otherwise, json does it: an array with NaN or infinities (orjson
  writes null, json NaN) or that orjson cannot write, a file with them or with a number beyond float64
  (orjson refuses it), and a file with an integer beyond 64 bits (orjson reads it as a float). Without
  orjson, json does all.

Where tf_keras lacks what is patched, nothing changes.
"""
from __future__ import annotations

import contextlib
import json
from types import SimpleNamespace
from typing import Iterator

import numpy as np

from pipeline.patching import Overlay, optional_module, replaced

# TF ops whose first argument is a list of tensors: a list of constants there is not one array.
_LIST_ARGUMENT_OPS = frozenset({"concat", "stack", "parallel_stack", "add_n", "accumulate_n", "dynamic_stitch",
                                "parallel_dynamic_stitch", "identity_n", "meshgrid", "tuple", "group", "case",
                                "switch_case", "broadcast_dynamic_shape", "broadcast_static_shape"})
_INT32 = np.iinfo(np.int32)
_CONSTANT_VALUE = "_CONSTANT_VALUE"  # tf_keras's marker for a constant call argument (engine/node.py)
_LARGE = 1024  # numbers: weights, never an attribute like strides or a permutation


@contextlib.contextmanager
def skip_tracking_metadata() -> Iterator[None]:
    """Skip `_tracking_metadata` in tf_keras's walk over layer attributes (see the module docstring)."""
    saving_lib = optional_module("tf_keras.src.saving.saving_lib")
    skiplist = getattr(saving_lib, "ATTR_SKIPLIST", None)
    if not isinstance(skiplist, frozenset):
        yield
        return
    with replaced(saving_lib, "ATTR_SKIPLIST", skiplist | {"_tracking_metadata"}):
        yield


@contextlib.contextmanager
def dense_constant_arguments() -> Iterator[None]:
    """While a model is rebuilt from its config, keep each large constant of a TF-op layer's call as
    one value instead of one per number (see the module docstring)."""
    functional = optional_module("tf_keras.src.engine.functional")
    layer_class = getattr(optional_module("tf_keras.src.engine.base_layer"), "Layer", None)
    op_layer_class = getattr(optional_module("tf_keras.src.layers.core.tf_op_layer"), "TFOpLambda", None)
    reconstruct = getattr(functional, "reconstruct_from_config", None)
    construct = getattr(layer_class, "_functional_construction_call", None)
    if reconstruct is None or construct is None or op_layer_class is None:
        yield
        return
    _register_conversion()

    def reconstruct_from_config(config, *args, **kwargs):
        return reconstruct(_with_constants_kept(config), *args, **kwargs)

    def construction_call(layer, inputs, args, kwargs, input_list):
        op_layer = isinstance(layer, op_layer_class) and _takes_one_tensor(layer)
        value = inputs.value if isinstance(inputs, Constant) else inputs
        dense = _dense_constant(value) if op_layer else None
        if dense is not None:
            inputs, input_list = dense, [dense]
        elif value is not inputs:  # a kept constant this op does not take as one tensor: the file's list
            inputs, input_list = value, _flatten(value)
        if not op_layer:  # anything but a TF op gets its arguments exactly as the file has them
            kwargs = {k: v.value if isinstance(v, Constant) else v for k, v in kwargs.items()}
        return construct(layer, inputs, args, kwargs, input_list)

    with replaced(functional, "reconstruct_from_config", reconstruct_from_config), \
            replaced(layer_class, "_functional_construction_call", construction_call):
        yield


class Constant:
    """A large constant from a .keras config, still the nested list the file holds: one leaf to tf_keras's
    walks over call arguments. An op converts it to a tensor exactly as it converts the list itself
    (the same dtype and dtype hint, through TF's conversion registry)."""

    __slots__ = ("value", "floats")

    def __init__(self, value: list, floats: bool = False) -> None:
        self.value = value
        self.floats = floats  # every number a Python float: read at C speed (see _register_conversion)


_registered = False


def _register_conversion() -> None:
    global _registered
    if _registered:
        return
    import tensorflow as tf

    def convert(value: Constant, dtype=None, name=None, as_ref=False):
        if value.floats and (dtype is None or tf.as_dtype(dtype) == tf.float32):
            # what TF makes of a list of Python floats (each rounded to the nearest float32), built by numpy
            # instead of number by number (RegNet's 3.9 million: 2.7 s -> 0.1 s)
            return tf.constant(np.array(value.value, dtype=np.float32), name=name)
        return tf.convert_to_tensor(value.value, dtype=dtype, name=name)

    tf.register_tensor_conversion_function(Constant, convert)
    _registered = True


def _with_constants_kept(config: dict) -> dict:
    """The model config with each large numeric list in its layers' call arguments (a TF op's constant
    first argument, or a keyword argument) as a `Constant`."""
    if not isinstance(config, dict) or not isinstance(config.get("layers"), list):
        return config
    layers = [dict(layer, inbound_nodes=_kept(layer["inbound_nodes"]))
              if isinstance(layer, dict) and isinstance(layer.get("inbound_nodes"), list) else layer
              for layer in config["layers"]]
    return dict(config, layers=layers)


def _kept(node):
    """One node's data: a call entry is [layer name, node index, tensor index or constant, kwargs]."""
    if not isinstance(node, list):
        return node
    if len(node) in (3, 4) and isinstance(node[0], str):
        entry = list(node)
        if entry[0] == _CONSTANT_VALUE:
            entry[2] = _kept_constant(entry[2])
        if len(entry) == 4 and isinstance(entry[3], dict):
            entry[3] = {k: _kept_constant(v) for k, v in entry[3].items()}
        return entry
    return [_kept(item) for item in node]


def _kept_constant(value):
    """A `Constant` for a large numeric list, else the value itself."""
    kinds = _number_kinds(value)
    return value if kinds is None else Constant(value, floats=kinds == {float})


def _number_kinds(value) -> frozenset | None:
    """The Python types of the numbers of a nested list of at least _LARGE plain numbers (no strings,
    None, dicts or ragged rows); None for anything else."""
    if not isinstance(value, list):
        return None
    try:
        leaves = np.array(value, dtype=object)  # walks the lists in C: millions of numbers in a fraction of a second
    except ValueError:  # lists nested to different depths
        return None
    kinds = frozenset(map(type, leaves.flat))
    return kinds if leaves.size >= _LARGE and kinds <= {float, int, bool} else None


def _flatten(value) -> list:
    import tensorflow as tf

    return tf.nest.flatten(value)


@contextlib.contextmanager
def no_trial_encoding() -> Iterator[None]:
    """While a model is saved, skip the trial JSON encoding of each layer call's keyword arguments.

    tf_keras's Node.serialize encodes a call's keyword arguments to JSON once only to see whether it
    can, and throws the text away; the model's whole config is encoded again when the file is written,
    and that raises the same TypeError for anything that cannot be encoded. For onnx2tf's models,
    whose constants are keyword arguments, the trial is a third of the save (RegNet-400MF's Keras file
    with frozen weights: 3.9 million numbers). The file written is the same."""
    node = optional_module("tf_keras.src.engine.node")
    if getattr(node, "json", None) is None:
        yield
        return
    with replaced(node, "json", SimpleNamespace(dumps=lambda *args, **kwargs: "")):
        yield


class Leaf:
    """A large constant array of a layer call, while its model is saved: one leaf to tf_keras's walks
    (tf.nest, serialisation, deep copies), written by the JSON encoder as the array's nested list."""

    __slots__ = ("array",)

    def __init__(self, array: np.ndarray) -> None:
        self.array = array

    def __deepcopy__(self, memo) -> "Leaf":
        return self  # never changed during the save: a copy would be the same numbers


@contextlib.contextmanager
def constants_as_leaves() -> Iterator[None]:
    """Each .keras save inside the block writes large constants as leaves (see the module docstring)."""
    serialization_lib = optional_module("tf_keras.src.saving.serialization_lib")
    saving_lib = optional_module("tf_keras.src.saving.saving_lib")
    serialize = getattr(serialization_lib, "serialize_keras_object", None)
    save = getattr(saving_lib, "save_model", None)
    if serialize is None or save is None or getattr(saving_lib, "json", None) is None:
        yield
        return

    def serialize_keras_object(obj):
        return obj if isinstance(obj, Leaf) else serialize(obj)

    def save_model(model, *args, **kwargs):
        with _leaves_in_calls(model):
            return save(model, *args, **kwargs)

    with replaced(serialization_lib, "serialize_keras_object", serialize_keras_object), \
            replaced(saving_lib, "save_model", save_model), replaced(saving_lib, "json", Overlay(json, dumps=_dumps)):
        yield


_MARK = "\x00pt2tf-constant\x00"  # stands in for a Leaf's numbers in the JSON text, until they are spliced in


def _dumps(value, **kwargs) -> str:
    """json.dumps of a config with `Leaf`s, each written as its array's `tolist()` would be (see the module
    docstring): the config's text with a mark per leaf, then each leaf's numbers in its mark's place."""
    numbers: list[str] = []

    def mark(obj):
        if isinstance(obj, Leaf):
            numbers.append(_array_json(obj.array))
            return _MARK
        raise TypeError(f"Object of type {type(obj).__name__} is not JSON serializable")

    pieces = json.dumps(value, default=mark, **kwargs).split(json.dumps(_MARK))
    if len(pieces) != len(numbers) + 1:  # the mark's own text in the config: write every number with json
        return json.dumps(value, default=_plain_leaf, **kwargs)
    return "".join(piece + text for piece, text in zip(pieces, numbers)) + pieces[-1]


def _plain_leaf(obj):
    if isinstance(obj, Leaf):
        return obj.array.tolist()  # what tf_keras writes for the array or the constant tensor
    raise TypeError(f"Object of type {type(obj).__name__} is not JSON serializable")


def _array_json(array: np.ndarray) -> str:
    """The JSON text of `array.tolist()`: by orjson for finite floats (as float64, the numbers tolist()
    gives), integers and booleans; by json for anything else (NaN and infinities, other dtypes, a
    non-native byte order) and for whatever orjson refuses."""
    fast = optional_module("orjson")
    kind = array.dtype.kind
    plain = (fast is None or kind not in "biuf" or array.dtype.itemsize > 8 or not array.dtype.isnative
             or array.ndim == 0 or (kind == "f" and not np.isfinite(array).all()))
    if not plain:
        try:
            wide = array.astype(np.float64) if kind == "f" else array
            return fast.dumps(np.ascontiguousarray(wide), option=fast.OPT_SERIALIZE_NUMPY).decode()
        except fast.JSONEncodeError:  # an array orjson cannot write: json writes its numbers
            pass
    return json.dumps(array.tolist())


@contextlib.contextmanager
def fast_json_load() -> Iterator[None]:
    """tf_keras reads a .keras file's config with `_loads` (see the module docstring)."""
    saving_lib = optional_module("tf_keras.src.saving.saving_lib")
    if getattr(saving_lib, "json", None) is None or optional_module("orjson") is None:
        yield
        return
    with replaced(saving_lib, "json", Overlay(json, loads=_loads)):
        yield


# Each byte as a digit (1), a minus (M), what else can come before a JSON number (S: bracket, comma, colon,
# whitespace) or anything else (0).
_NUMBER_BYTES = bytes(ord("1") if 48 <= c <= 57 else ord("M") if c == ord("-") else
                      ord("S") if c in b"[ ,:\t\n\r" else ord("0") for c in range(256))
_INT64_MIN, _UINT64_MAX = -(2 ** 63), 2 ** 64 - 1


def _loads(text):
    """json.loads by orjson, where it reads the very numbers json reads (see the module docstring)."""
    import orjson

    data = text.encode() if isinstance(text, str) else bytes(text)
    if _may_exceed_64_bits(data):
        return json.loads(text)  # orjson might read an integer here as a float
    try:
        return orjson.loads(data)
    except orjson.JSONDecodeError:  # NaN, Infinity, a number beyond float64: json reads them
        return json.loads(text)


def _may_exceed_64_bits(data: bytes) -> bool:
    """Whether the JSON text has an integer orjson may read as a float: above uint64 or below int64. A
    float's digits follow a '.' or an 'e', never one of the bytes that can come before a number, so only
    integers (and digits in strings, which only send the file to json, never wrong) are looked at."""
    kinds = b"S" + data.translate(_NUMBER_BYTES)  # the text's start can come before a number too
    return (_beyond(data, kinds, b"S" + b"1" * 20, lambda n: n > _UINT64_MAX, 1)
            or _beyond(data, kinds, b"M" + b"1" * 19, lambda n: n < _INT64_MIN, 0))


def _beyond(data: bytes, kinds: bytes, pattern: bytes, out_of_range, skip: int) -> bool:
    """Whether a number at `pattern` (its sign or the byte before it, then as many digits as the
    range's widest number has) is longer than that or out of range. Few are found: int64's smallest (a
    slice's end) and uint64's largest are in range."""
    start = kinds.find(pattern)
    while start != -1:
        end = start + len(pattern)
        if kinds[end:end + 1] == b"1" or out_of_range(int(data[start + skip - 1:end - 1])):
            return True
        start = kinds.find(pattern, end)
    return False


@contextlib.contextmanager
def _leaves_in_calls(model) -> Iterator[None]:
    """The model's layer calls with each large constant as a `Leaf`; its own arguments again afterwards."""
    import tensorflow as tf

    swapped = []
    for layer in getattr(model, "layers", []):
        for node in getattr(layer, "_inbound_nodes", []):
            args, kwargs = node.call_args, node.call_kwargs
            leaves = tf.nest.map_structure(_leaf, (args, kwargs))
            if any(isinstance(v, Leaf) for v in tf.nest.flatten(leaves)):
                swapped.append((node, args, kwargs))
                node.call_args, node.call_kwargs = leaves
    try:
        yield
    finally:
        for node, args, kwargs in swapped:
            node.call_args, node.call_kwargs = args, kwargs


def _leaf(value):
    """A `Leaf` for a large constant array (numpy, or an eager constant tensor), else the value itself:
    variables and Keras tensors stay what they are."""
    import tensorflow as tf

    if isinstance(value, np.ndarray):
        return Leaf(value) if value.size >= _LARGE else value
    if not isinstance(value, tf.Tensor) or hasattr(value, "_keras_history") or not hasattr(value, "_numpy"):
        return value  # a variable is not a tf.Tensor; a graph tensor has no value to write
    size = value.shape.num_elements()
    return Leaf(value.numpy()) if size is not None and size >= _LARGE else value


@contextlib.contextmanager
def fast_save() -> Iterator[None]:
    """The save speed-ups, for writing a .keras file."""
    with skip_tracking_metadata(), no_trial_encoding(), constants_as_leaves():
        yield


@contextlib.contextmanager
def ancillary_layers_by_identity() -> Iterator[None]:
    """tf_keras's search for layers not connected to a rebuilt model's outputs, in one walk (see the module
    docstring)."""
    functional = optional_module("tf_keras.src.engine.functional")
    real = getattr(functional, "connect_ancillary_layers", None)
    if real is None:
        yield
        return

    def connect_ancillary_layers(model, created_layers):
        present = {id(layer) for layer in model.layers}
        if all(id(layer) in present for layer in created_layers.values()):
            return model
        return real(model, created_layers)

    with replaced(functional, "connect_ancillary_layers", connect_ancillary_layers):
        yield


@contextlib.contextmanager
def fast_load() -> Iterator[None]:
    """The load speed-ups, for loading a .keras file."""
    with skip_tracking_metadata(), dense_constant_arguments(), fast_json_load(), ancillary_layers_by_identity():
        yield


def _takes_one_tensor(layer) -> bool:
    name = str(layer.get_config().get("function", ""))
    return bool(name) and name.rsplit(".", 1)[-1] not in _LIST_ARGUMENT_OPS


def _dense_constant(value):
    """One tensor for a rectangular nested list of numbers of one Python type; None for anything else."""
    if not isinstance(value, (list, tuple)):
        return None
    import tensorflow as tf

    leaves = tf.nest.flatten(value)
    kinds = {type(leaf) for leaf in leaves}
    dtype = {frozenset({float}): np.float32, frozenset({int}): np.int32, frozenset({bool}): np.bool_}.get(frozenset(kinds))
    if dtype is None or len(leaves) < 2:
        return None
    if dtype is np.int32 and not all(_INT32.min <= leaf <= _INT32.max for leaf in leaves):
        return None  # one by one, large integers become int64 tensors: not one int32 array
    try:
        array = np.array(value, dtype=dtype)
    except ValueError:  # ragged
        return None
    if array.size != len(leaves):
        return None
    return tf.constant(array)
