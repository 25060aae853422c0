"""A faster .keras load and save: the same files and the same weights.

tf_keras saves and loads a .keras file's weights by walking every attribute of every layer and
reading each one (saving_lib._walk_trackable). One of them, `_tracking_metadata`, serialises the
whole model config to a JSON string every time it is read: for onnx2tf's models, a chain of a few
hundred layers, that is a third to a half of the load (MobileNetV2: 6.4 s, 3.4 s without it). A
string is never a trackable, so the walk never descends into it: with the attribute on tf_keras's
own skip list (ATTR_SKIPLIST) the same weights are saved and loaded (tests/runners/test_tensorflow.py
compares both). Where tf_keras has no such list, nothing changes.
"""
from __future__ import annotations

import contextlib
from typing import Iterator


@contextlib.contextmanager
def skip_tracking_metadata() -> Iterator[None]:
    """Skip `_tracking_metadata` in tf_keras's walk over layer attributes (see the module docstring)."""
    try:
        from tf_keras.src.saving import saving_lib
    except ImportError:
        yield
        return
    skiplist = getattr(saving_lib, "ATTR_SKIPLIST", None)
    if not isinstance(skiplist, frozenset):
        yield
        return
    saving_lib.ATTR_SKIPLIST = skiplist | {"_tracking_metadata"}
    try:
        yield
    finally:
        saving_lib.ATTR_SKIPLIST = skiplist
