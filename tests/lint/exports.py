"""Tiny ONNX files for the lint tests: export a model with either exporter, then tamper with the graph.

Kept out of a conftest so that test modules import what they use.
"""
from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import onnx
import torch
from onnx import helper, numpy_helper

from pipeline.lint import Finding, run_rules
from pipeline.lint.context import LintContext

EXPORTERS = ("dynamo", "torchscript")


def export(model: torch.nn.Module, args: tuple, path: Path, exporter: str) -> Path:
    """Export `model` with the named exporter to `path` (the way the pipeline calls each one)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # TorchScript deprecation and tracer warnings
        if exporter == "dynamo":
            torch.onnx.export(model, args, dynamo=True, verbose=False).save(str(path))
        else:
            torch.onnx.export(model, args, str(path), dynamo=False)
    return path


def export_all(model: torch.nn.Module, args: tuple, folder: Path, exporters=EXPORTERS) -> dict[str, Path]:
    return {exporter: export(model, args, folder / f"{exporter}.onnx", exporter) for exporter in exporters}


def load(path: Path) -> onnx.ModelProto:
    """A fresh copy of the file, safe to tamper with."""
    return onnx.load(str(path))


def lint(model: onnx.ModelProto, torch_model, args: tuple = (), rule: str | None = None, **context) -> list[Finding]:
    """Run every rule (or one) the way the lint stage does."""
    return run_rules(LintContext(model, torch_model, args, **context), only=[rule] if rule else None)


def errors(findings: list[Finding]) -> list[Finding]:
    return [f for f in findings if f.severity == "error"]


def nodes(model: onnx.ModelProto, op_type: str) -> list[onnx.NodeProto]:
    return [node for node in model.graph.node if node.op_type == op_type]


def only_node(model: onnx.ModelProto, op_type: str) -> onnx.NodeProto:
    (node,) = nodes(model, op_type)
    return node


def attribute(node: onnx.NodeProto, name: str):
    found = [a for a in node.attribute if a.name == name]
    return helper.get_attribute_value(found[0]) if found else None


def set_attribute(node: onnx.NodeProto, name: str, value) -> None:
    """Replace (or add) one attribute; the tamper every test here is about."""
    kept = [a for a in node.attribute if a.name != name]
    del node.attribute[:]
    node.attribute.extend(kept + [helper.make_attribute(name, value)])


def remove_attribute(node: onnx.NodeProto, name: str) -> None:
    kept = [a for a in node.attribute if a.name != name]
    del node.attribute[:]
    node.attribute.extend(kept)


def set_initializer(model: onnx.ModelProto, name: str, values: np.ndarray) -> None:
    (init,) = [i for i in model.graph.initializer if i.name == name]
    init.CopyFrom(numpy_helper.from_array(np.asarray(values, dtype=numpy_helper.to_array(init).dtype), name))


def initializer(model: onnx.ModelProto, name: str) -> np.ndarray:
    (init,) = [i for i in model.graph.initializer if i.name == name]
    return numpy_helper.to_array(init)


def strip_names(model: onnx.ModelProto, initializers: bool = False) -> onnx.ModelProto:
    """What a graph tool that knows nothing of PyTorch leaves: no metadata, meaningless node names,
    and with `initializers=True` meaningless initializer names too."""
    for index, node in enumerate(model.graph.node):
        del node.metadata_props[:]
        node.name = f"n{index}"
    if initializers:
        renamed = {init.name: f"w{index}" for index, init in enumerate(model.graph.initializer)}
        for init in model.graph.initializer:
            init.name = renamed[init.name]
        for node in model.graph.node:
            node.input[:] = [renamed.get(name, name) for name in node.input]
    return model
