"""Flatten after a conv: Keras flattens NHWC (H, W, C), PyTorch NCHW (C, H, W); a Dense
with the Linear's weights merely transposed then reads every feature from the wrong place."""
from __future__ import annotations

import dataclasses

from pipeline.diagnose.corrections import Correction, Insert
from pipeline.diagnose.graph import input_shape, producer
from pipeline.diagnose.mapping import BY_WEIGHTS
from pipeline.artifacts.diagnose_record import Finding
from pipeline.diagnose.rules import PairContext, rule


@rule("flatten_order", "linear")
def flatten_order(ctx: PairContext) -> list[Finding]:
    source = producer(ctx.layer)
    if source is None or type(source).__name__ != "Flatten" or ctx.pair.method != BY_WEIGHTS:
        return []
    shape = input_shape(source)
    if len(shape) != 4 or getattr(source, "data_format", "channels_last") != "channels_last" or shape[1] * shape[2] == 1:
        return []
    correction = Correction("Permute((3, 1, 2)) in front of the Flatten (NHWC -> NCHW order)",
                            inserts=(Insert(source.name, "Permute", f"{source.name}_to_nchw", (("dims", (3, 1, 2)),)),))
    finding = ctx.finding(
        "flatten_order", "error", "flatten order", "C, H, W (PyTorch flattens NCHW)", "H, W, C (Flatten of NHWC)",
        f"Flatten '{source.name}' flattens an NHWC tensor {list(shape[1:])} in (H, W, C) order, but Dense "
        f"'{ctx.layer.name}' holds {ctx.pair.module}'s weights for PyTorch's (C, H, W) order: the features are permuted; "
        f"fix: {correction.description}, or permute the Dense kernel's rows",
        correction=correction,
    )
    return [dataclasses.replace(finding, keras_layer=source.name)]
