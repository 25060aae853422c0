"""A faster first torch.onnx.export(dynamo=True): the same registry, so the same ONNX file.

Before its first export in a process, torch.onnx builds its registry of torchlib's ATen functions
(onnxscript's `get_torchlib_ops`). For each function it reads `function.function_ir.domain`; for
the 497 trace-only functions (`TracedOnnxFunction`), `function_ir` reads the function's source
file, parses it and translates its signature, every time, and the registry keeps only the domain:
0.4 s of each run's export, which is on the critical path of a small model's whole run (seed_ym:
about 5 s). That domain is the function's opset's (the translation's opset is the function's own),
which `function.domain` gives without parsing; tests/export/test_torchlib.py checks, for every
trace-only function torchlib registers, that both give the same domain and the registry the same
entries.

While the registry is built inside `quick_torchlib_registry()`, a trace-only function's `function_ir`
is a record of that domain alone. An onnxscript whose `get_torchlib_ops` reads more than the domain
(AttributeError) builds its registry as before; an onnxscript or torch without these names is left
alone.
"""
from __future__ import annotations

import contextlib
from types import ModuleType, SimpleNamespace
from typing import Iterator

from pipeline.patching import optional_module, replaced


@contextlib.contextmanager
def quick_torchlib_registry() -> Iterator[None]:
    apis, traced = _apis(), _traced_function_class()
    real = getattr(apis, "get_torchlib_ops", None)
    if real is None or traced is None or not isinstance(getattr(traced, "function_ir", None), property):
        yield
        return

    def get_torchlib_ops():
        try:
            with replaced(traced, "function_ir", property(_domain_only)):
                return real()
        except AttributeError:  # this onnxscript reads more of a function's IR than its domain
            return real()

    with replaced(apis, "get_torchlib_ops", get_torchlib_ops):
        yield


def _domain_only(function) -> SimpleNamespace:
    return SimpleNamespace(domain=function.domain)


def _apis() -> ModuleType | None:
    """The onnxscript module torch.onnx takes get_torchlib_ops from (its lazy import names it)."""
    lazy_import = optional_module("torch.onnx._internal._lazy_import")
    name = getattr(getattr(lazy_import, "onnxscript_apis", None), "_name", None)
    return optional_module(name) if isinstance(name, str) else None


def _traced_function_class() -> type | None:
    values = optional_module("onnxscript._internal.values")
    return getattr(values, "TracedOnnxFunction", None) if values is not None else None
