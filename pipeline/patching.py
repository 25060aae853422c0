"""Replacing a library's attribute for the length of a block: the one way the pipeline patches
onnx2tf and tf_keras (pipeline/keras_io.py, pipeline/converters/)."""
from __future__ import annotations

import contextlib
from typing import Any, Iterator


@contextlib.contextmanager
def replaced(owner: Any, name: str, value: Any) -> Iterator[None]:
    """owner.name is value inside the block, and its own value again after it, also when the block raises."""
    original = getattr(owner, name)
    setattr(owner, name, value)
    try:
        yield
    finally:
        setattr(owner, name, original)
