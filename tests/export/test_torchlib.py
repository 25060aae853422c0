"""The quick torchlib registry holds what onnxscript's own holds, and exports the same ONNX file."""
from __future__ import annotations

import torch

from pipeline.export import torchlib
from pipeline.export.torchlib import _apis, _traced_function_class, quick_torchlib_registry


def _entries(metas) -> list[tuple]:
    return [(m.qualified_name, m.domain, m.name, m.is_complex, m.function) for m in metas]


def test_every_trace_only_function_has_its_opsets_domain_and_the_registry_the_same_entries():
    from onnxscript.function_libs.torch_lib import ops, registration

    del ops  # imported to register torchlib's functions, as get_torchlib_ops does

    traced = _traced_function_class()
    functions = [f for entry in registration.default_registry.values() for f in [*entry.overloads, *entry.complex]
                 if isinstance(f, traced)]
    assert len(functions) > 100  # the trace-only functions the speed-up is for
    assert all(f.function_ir.domain == f.domain for f in functions)
    apis = _apis()
    real = _entries(apis.get_torchlib_ops())
    with quick_torchlib_registry():
        quick = _entries(apis.get_torchlib_ops())
    assert quick == real
    assert isinstance(traced.function_ir, property) and traced.function_ir.fget.__name__ == "function_ir"


class _Small(torch.nn.Module):
    def forward(self, x):
        return torch.nn.functional.gelu(x).sum(dim=1, keepdim=True) * torch.sigmoid(x)


def test_an_export_inside_it_is_the_export_outside_it(monkeypatch):
    asked = []
    real = torchlib._domain_only
    monkeypatch.setattr(torchlib, "_domain_only", lambda function: asked.append(function) or real(function))
    x = torch.rand(2, 5)
    plain = torch.onnx.export(_Small(), (x,), dynamo=True).model_proto
    assert not asked
    with quick_torchlib_registry():
        quick = torch.onnx.export(_Small(), (x,), dynamo=True).model_proto
    assert len(asked) > 100, "the export inside did not build its registry through the stand-in"
    assert quick.SerializeToString() == plain.SerializeToString()


def test_an_onnxscript_that_reads_more_than_the_domain_builds_its_registry_as_before(monkeypatch):
    from onnxscript.function_libs.torch_lib import ops, registration

    del ops
    traced = _traced_function_class()
    some = next(f for entry in registration.default_registry.values() for f in entry.overloads if isinstance(f, traced))
    apis = _apis()
    monkeypatch.setattr(apis, "get_torchlib_ops", lambda: some.function_ir.name)
    with quick_torchlib_registry():
        assert apis.get_torchlib_ops() == some.function_ir.name
