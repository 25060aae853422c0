"""pipeline/report/terminal.py: errors and warnings in full, infos counted per rule unless --verbose."""
from __future__ import annotations

import io

from rich.console import Console

from pipeline.report.terminal import localization_lines, print_findings


def finding(severity: str, rule: str, node: str) -> dict:
    return {"rule": rule, "severity": severity, "node": node, "op_type": "Conv", "module": "m", "message": f"{rule} at {node}"}


LINT = {"counts": {"error": 1, "warning": 0, "info": 3},
        "findings": [finding("error", "bn_epsilon", "bn"), *(finding("info", "pads", f"conv{i}") for i in range(2)),
                     finding("info", "auto_pad", "conv9")], "notes": []}


def printed(verbose: bool) -> str:
    out = Console(file=io.StringIO(), width=200)
    print_findings(LINT, verbose=verbose, out=out)
    return out.file.getvalue()


def test_infos_are_counted_per_rule_and_errors_shown_in_full():
    text = printed(verbose=False)
    assert "bn_epsilon at bn" in text
    assert "pads at conv0" not in text and "3 notes (auto_pad 1, pads 2); --verbose lists them" in text


def test_verbose_lists_every_info():
    text = printed(verbose=True)
    assert all(f"pads at conv{i}" in text for i in range(2)) and "auto_pad at conv9" in text and "--verbose" not in text


def test_a_pair_that_compared_nothing_says_why_in_one_line():
    layers = {"ran": True, "judged_by": "noise floor", "pairs": [{"reference": "pytorch_fp64", "candidate": "keras", "tensors": []}],
              "notes": ["keras vs pytorch_fp64: no intermediate tensor compared: none of its tensors has a PyTorch module output"]}
    lines = localization_lines({"localization": [], "layers": layers})
    assert lines[-1].startswith("layer by layer: keras vs pytorch_fp64: no intermediate tensor compared")


def test_no_layer_model_claims_nothing_about_departures():
    layers = {"ran": True, "judged_by": "noise floor", "pairs": [{"reference": "pytorch_fp64", "candidate": "onnxruntime", "tensors": []}],
              "notes": ["no layer model: onnx2tf 2.6.9 (flatbuffer_direct) ..."]}
    lines = localization_lines({"localization": [], "layers": layers})
    assert lines[0] == "layer by layer: no intermediate tensor was compared, so nothing is said about where an error starts"
    assert not any("departs" in line for line in lines)
