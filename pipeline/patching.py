"""Replacing a library's attribute for the length of a block: the one way the pipeline patches
onnx2tf, tf_keras and torch.onnx (pipeline/keras_io.py, pipeline/converters/, pipeline/export/torchlib.py)."""
from __future__ import annotations

import contextlib
import importlib
from types import ModuleType
from typing import Any, Iterator


def optional_module(name: str) -> ModuleType | None:
    """The module, or None where this version of the library has no such module (then nothing is patched)."""
    try:
        return importlib.import_module(name)
    except ImportError:
        return None


class Overlay:
    """Stands in for a module (or any object) while a library uses it: the attributes given, and the real
    object's for every other name (onnx2tf's `tf` and `tf_keras`, say, with one function of our own)."""

    def __init__(self, real: Any, **attributes: Any) -> None:
        self._real = real
        self.__dict__.update(attributes)

    def __getattr__(self, name: str) -> Any:  # only for names not given
        return getattr(self._real, name)


@contextlib.contextmanager
def replaced(owner: Any, name: str, value: Any) -> Iterator[None]:
    """owner.name is value inside the block, and its own value again after it, also when the block raises."""
    original = getattr(owner, name)
    setattr(owner, name, value)
    try:
        yield
    finally:
        setattr(owner, name, original)
