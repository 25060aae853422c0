"""TFLite files layer by layer: every intermediate tensor a file computes, next to ONNX Runtime's float32
tensor of the same ONNX name, in graph order.

LiteRT keeps every intermediate when asked (experimental_preserve_all_tensors); the converter recorded
which TF layer makes each ONNX tensor, and TFLite names its tensors after those layers, so the two
align by name (runners/tensorflow.py: TFLiteLayersRunner). Integer tensors are dequantized with their
own scale and zero point. For each file this finds the first tensor that holds NaN or Inf where ONNX
Runtime's does not (an fp16 epsilon stored as 0, say), and each tensor's SNR against float32, worst
first, with the first one in graph order below the file's budget (an int8 outlier channel, say).
Tensors fused away by the converter (a Conv's output when its ReLU is fused in) have no TFLite
tensor: the record says how many aligned.
"""
from __future__ import annotations

import numpy as np

from pathlib import Path

from pipeline.compare import DEFAULT_BUDGETS
from pipeline.names import PRECISION

MAX_LISTED = 10  # worst tensors listed per file


def run_tflite_layers(request, backends: list[str], module_of, order, shapes) -> list[dict]:
    """One record per TFLite backend: aligned tensors, the first non-finite one, the worst SNRs."""
    from pipeline.runners.intermediates import onnx_intermediates_runner, temp_workdir, tflite_layers_runner

    records = []
    with temp_workdir() as workdir:
        reference = onnx_intermediates_runner(request.artifacts.onnx, request.export.inputs, Path(workdir))
        runners = {b: tflite_layers_runner(request.artifacts.root / request.convert.models[b], request.convert,
                                           request.export.inputs, b.removeprefix("tflite_"), shapes) for b in backends}
        missing = [b for b, r in runners.items() if r is None]
        records += [{"backend": b, "aligned": 0, "note": "the converter recorded no TF layer names for its tensors: "
                     "TFLite intermediates cannot be aligned with ONNX tensors"} for b in missing]
        live = {b: r for b, r in runners.items() if r is not None}
        if live:
            records += _compare(reference, live, request, module_of, order)
    return records


def _compare(reference, runners: dict, request, module_of, order) -> list[dict]:
    sample_labels = _labels(request)
    totals = {b: {} for b in runners}  # backend -> tensor -> [signal, noise, first non-finite sample]
    inside = {b: None for b in runners}  # backend -> the first non-finite TFLite tensor, on the first sample with one
    reference.activate()
    for runner in runners.values():
        runner.activate()
    try:
        for index, feed in enumerate(request.feeds):
            truth = reference.infer(feed)
            for backend, runner in runners.items():
                _fold(totals[backend], truth, runner.infer(feed), sample_labels[index])
                if inside[backend] is None and runner.first_non_finite is not None:
                    inside[backend] = {**runner.first_non_finite, "sample": sample_labels[index]}
    finally:
        reference.deactivate()
        for runner in runners.values():
            runner.deactivate()
    return [{**_record(backend, totals[backend], len(runners[backend].output_names), module_of, order),
             "first_non_finite_in_file": _in_file(inside[backend], module_of, order)} for backend in runners]


def _in_file(found: dict | None, module_of, order) -> dict | None:
    """The first non-finite TFLite tensor, with the ONNX node of the next aligned tensor (it is made on the way to it)."""
    if found is None:
        return None
    node = order.producer.get(found["next_aligned"]) if found["next_aligned"] else None
    return {**found, "node": node.name if node is not None else None, "op_type": node.op_type if node is not None else None,
            "module": module_of(node) if node is not None else None}


def _labels(request) -> list[str]:
    from pipeline.inputs import sample_labels

    return sample_labels(len(request.feeds), edge_cases=True)


def _fold(totals: dict, truth: dict, values: dict, label: str) -> None:
    for tensor, value in values.items():
        ref = truth.get(tensor)
        if ref is None or np.shape(ref) != np.shape(value):
            continue
        ref64, cand64 = np.asarray(ref, np.float64), np.asarray(value, np.float64)
        entry = totals.setdefault(tensor, [0.0, 0.0, None])
        bad = ~np.isfinite(cand64) & np.isfinite(ref64)
        if bad.any() and entry[2] is None:
            entry[2] = label
        ok = np.isfinite(cand64) & np.isfinite(ref64)
        entry[0] += float(np.sum(ref64[ok] ** 2))
        entry[1] += float(np.sum((cand64[ok] - ref64[ok]) ** 2))


def _record(backend: str, totals: dict, aligned: int, module_of, order) -> dict:
    position = {name: i for i, name in enumerate(order.tensors)}
    rows = []
    for tensor in sorted(totals, key=lambda t: position.get(t, len(position))):
        signal, noise, non_finite = totals[tensor]
        node = order.producer.get(tensor)
        rows.append({"tensor": tensor, "node": node.name if node is not None else None,
                     "op_type": node.op_type if node is not None else None,
                     "module": module_of(node) if node is not None else None,
                     "snr_db": _snr(signal, noise), "non_finite_on": non_finite})
    budget = DEFAULT_BUDGETS.get(PRECISION.get(backend, "fp32"))
    floor = budget.min_snr_db if budget is not None else None
    first_bad = next((r for r in rows if r["non_finite_on"]), None)
    first_below = next((r for r in rows if floor is not None and r["snr_db"] is not None and r["snr_db"] < floor), None)
    worst = sorted((r for r in rows if r["snr_db"] is not None), key=lambda r: r["snr_db"])[:MAX_LISTED]
    return {"backend": backend, "aligned": aligned, "compared": len(rows), "budget_snr_db": floor,
            "first_non_finite": first_bad, "first_below_budget": first_below, "worst": worst, "tensors": rows}


def _snr(signal: float, noise: float) -> float | None:
    if noise == 0:
        return None if signal == 0 else float("inf")
    return float(10 * np.log10(signal / noise)) if signal > 0 else float("-inf")


def with_where(records: list[dict]) -> list[dict]:
    """Each record with its `where` line: where the file first goes non-finite, or first falls below its budget."""
    return [{**r, "where": line} for r, line in zip(records, where_lines(records))]


def where_lines(records: list[dict]) -> list[str]:
    lines = []
    for r in records:
        if not r.get("compared"):
            lines.append(f"{r['backend']}: layer by layer: {r.get('note') or 'no intermediate tensor aligned'}")
            continue
        first = r["first_non_finite"] or r["first_below_budget"]
        head = f"{r['backend']}: {r['compared']} intermediate tensors compared with ONNX Runtime float32"
        if first is None:
            lines.append(f"{head}; none non-finite, none below {r['budget_snr_db']} dB" if r["budget_snr_db"] is not None
                         else f"{head}; none non-finite")
            continue
        what = (f"first NaN/Inf (on sample '{first['non_finite_on']}')" if r["first_non_finite"]
                else f"first below {r['budget_snr_db']:g} dB (SNR {first['snr_db']:.1f} dB)")
        line = f"{head}; {what} at node '{first['node']}' ({first['op_type']}, module {first['module'] or 'unknown'})"
        inside = r.get("first_non_finite_in_file")
        if inside:
            line += (f"; in the file, the first NaN/Inf is {inside['tflite_op']} '{inside['tflite_tensor']}' (sample "
                     f"'{inside['sample']}'), on the way to node '{inside['node']}' ({inside['op_type']}, module "
                     f"{inside['module'] or 'unknown'})")
        lines.append(line)
    return lines
