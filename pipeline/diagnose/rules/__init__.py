"""Attribute rules: one module per concern, each registered for the kinds of pair it checks.

A rule gets one mapped pair (Keras layer, PyTorch module) with its context and returns
findings; a finding that can be corrected carries the Correction that fixes it.
"""
from __future__ import annotations

import importlib
import pkgutil
from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch

from pipeline.diagnose.mapping import Pair
from pipeline.artifacts.diagnose_record import Finding
from pipeline.diagnose.run import PortLayout, TorchCall


@dataclass(frozen=True)
class PairContext:
    pair: Pair
    layer: object  # the Keras layer
    module: torch.nn.Module
    call: TorchCall
    port: object  # the Keras model
    layout: PortLayout
    mapped_keras: frozenset[str]
    mapped_torch: frozenset[str] = frozenset()
    previous: tuple[TorchCall, torch.nn.Module] | None = None  # the leaf module PyTorch ran just before

    def finding(self, rule: str, severity: str, attribute: str, expected, actual, message: str, **extra) -> Finding:
        return Finding(rule=rule, severity=severity, keras_layer=self.pair.keras_layer, module=self.pair.module,
                       attribute=attribute, expected=expected, actual=actual, message=message, **extra)


Rule = Callable[[PairContext], list[Finding]]
RULES: dict[str, list[tuple[str, Rule]]] = {}


def rule(name: str, *kinds: str) -> Callable[[Rule], Rule]:
    """Register a rule for pairs of these kinds."""
    def register(fn: Rule) -> Rule:
        for kind in kinds:
            RULES.setdefault(kind, []).append((name, fn))
        return fn
    return register


def check_pair(ctx: PairContext) -> list[Finding]:
    _discover()
    return [finding for _, fn in RULES.get(ctx.pair.kind, []) for finding in fn(ctx)]


def _discover() -> None:
    """Import every rule module once (importing one directly must not hide the others)."""
    for info in pkgutil.iter_modules(__path__):
        importlib.import_module(f"{__name__}.{info.name}")


def same_float32(a: float, b: float) -> bool:
    return bool(np.float32(a) == np.float32(b))


def config_of(layer) -> dict:
    return layer.get_config()
