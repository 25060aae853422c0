"""Upsampling: scale, interpolation mode and align_corners (Keras' bilinear is half-pixel,
align_corners=False)."""
from __future__ import annotations

from pipeline.diagnose.corrections import Correction, Edit
from pipeline.artifacts.diagnose_record import Finding
from pipeline.diagnose.rules import PairContext, rule

MODES = {"nearest": "nearest", "bilinear": "bilinear", "bicubic": "bicubic"}


@rule("upsample", "upsample")
def upsample(ctx: PairContext) -> list[Finding]:
    findings = []
    mode = MODES.get(ctx.module.mode, ctx.module.mode)
    if mode != ctx.layer.interpolation:
        findings.append(ctx.finding(
            "upsample", "error", "interpolation", mode, ctx.layer.interpolation,
            f"UpSampling2D '{ctx.layer.name}' interpolates '{ctx.layer.interpolation}', PyTorch's {ctx.pair.module} '{mode}'",
            correction=Correction(f"interpolation='{mode}'", edits=(Edit(ctx.layer.name, (("interpolation", mode),)),)),
        ))
    if ctx.module.align_corners:
        findings.append(ctx.finding(
            "upsample", "error", "align_corners", True, False,
            f"PyTorch's {ctx.pair.module} uses align_corners=True; Keras' UpSampling2D samples half-pixel centres "
            "(align_corners=False) and has no built-in equivalent"))
    shape_in, shape_out = ctx.call.input_shape, ctx.call.output_shape
    expected = tuple(o // i for o, i in zip(shape_out[2:], shape_in[2:]))
    actual = tuple(ctx.layer.size)
    if expected != actual:
        findings.append(ctx.finding(
            "upsample", "error", "size", list(expected), list(actual),
            f"UpSampling2D '{ctx.layer.name}' scales by {actual}, PyTorch's {ctx.pair.module} by {expected}",
            correction=Correction(f"size={expected}", edits=(Edit(ctx.layer.name, (("size", expected),)),)),
        ))
    return findings
