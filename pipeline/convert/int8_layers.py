"""What full-integer int8 costs each layer, and which layers to keep in float: TensorFlow's
QuantizationDebugger on the SavedModel, calibrated on the same samples as model_int8.tflite.

Runs where TensorFlow is (the TF worker, pipeline/runners/remote.py) on plain arrays in the TF
layout, and returns plain values; convert/int8_step.py names the layers and writes the record.

Per layer (each quantized op's output tensor), the debugger's NumericVerify ops compare the
dequantized tensor with the float op run on the same dequantized inputs, so each figure is that
layer's own error. Two SNRs are kept: the whole tensor's, and its worst channel's (last axis),
each channel against its own float values: one channel whose range is hundreds of times the
others' leaves them a few levels of the tensor's single scale, which the whole tensor's SNR,
dominated by that channel, hides. The table is ordered by the worst channel.

Keeping layers in float: layers are added worst first, each first alone, then with the ops that
read its output (otherwise they quantize it again at their input); the model's SNR against the
float TFLite model of the same SavedModel, on the in-distribution samples, decides when to stop.
Each float layer is then tried back in int8, and stays there when the budget still holds.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

# At most this many layers kept in float; beyond it selective int8 is not the cure (say so instead).
MAX_FLOAT_LAYERS = 8
NUMERIC_VERIFY = "NumericVerify/"


@dataclass
class Selection:
    """The layer table, the model's SNR before, and the float layers that bring it within budget."""

    # {"tensor", "op", "output" (the signature key of the model output it is, or None), "snr_db",
    # "worst_channel_snr_db", "max_abs_error"}, worst first
    layers: list[dict]
    snr_before_db: float
    float_layers: list[dict] = field(default_factory=list)  # {"tensor", "op", "output"}
    snr_after_db: float | None = None
    within_budget: bool = True
    tries: int = 0


def analyse(saved_model: Path, calibration: list[dict], evaluation: list[dict], min_snr_db: float,
            selective_path: Path) -> dict:
    """The per-layer table and, when int8 misses `min_snr_db` on `evaluation`, the fewest float layers that
    meet it, written as `selective_path`. Feeds are keyed by signature input name, in the TF layout."""
    import tensorflow as tf
    from ai_edge_litert.interpreter import Interpreter  # the runners' interpreter (tf.lite's is deprecated)

    from pipeline.converters import get_converter

    converter = get_converter().int8_converter(saved_model, lambda: iter(calibration))
    order: list[str] = []  # the debug interpreter's input order, known once it exists
    debugger = tf.lite.experimental.QuantizationDebugger(
        converter=converter, debug_dataset=lambda: ([feed[name] for name in order] for feed in calibration),
        debug_options=_options())
    order += _input_order(Interpreter(model_content=debugger.quant_model))
    debugger.run()
    graph = _Graph(Interpreter(model_content=debugger.calibrated_model))
    layers = _table(debugger.layer_statistics, graph)
    float_outputs = _run(Interpreter(model_content=_float_model(saved_model)), evaluation)
    measure = lambda model: _snr(float_outputs, _run(Interpreter(model_content=model), evaluation))  # noqa: E731
    selection = Selection(layers, measure(debugger.get_nondebug_quantized_model()))
    if selection.snr_before_db < min_snr_db:
        _select(selection, debugger, graph, measure, min_snr_db, selective_path)
    return {"layers": selection.layers, "snr_before_db": selection.snr_before_db, "float_layers": selection.float_layers,
            "snr_after_db": selection.snr_after_db, "within_budget": selection.within_budget, "tries": selection.tries,
            "selective": str(selective_path) if selective_path.exists() else None}


def _options(denylisted: list[str] | None = None):
    import tensorflow as tf

    return tf.lite.experimental.QuantizationDebugOptions(
        layer_direct_compare_metrics={"signal": _signal, "noise": _noise, "worst_channel_snr_db": _worst_channel_snr},
        denylisted_nodes=denylisted or None)


def _dequantized(quantized: np.ndarray, scale: float, zero_point: int) -> np.ndarray:
    return (quantized.astype(np.float64) - zero_point) * scale


def _signal(float_value, quantized, scale, zero_point) -> float:
    return float(np.mean(np.square(float_value, dtype=np.float64)))


def _noise(float_value, quantized, scale, zero_point) -> float:
    return float(np.mean(np.square(_dequantized(quantized, scale, zero_point) - float_value)))


def _worst_channel_snr(float_value, quantized, scale, zero_point) -> float:
    """The lowest SNR of one channel (last axis) against its own float values, in this sample; channels
    with no signal (a ReLU that never fires) are left out."""
    channels = float_value.shape[-1] if float_value.ndim else 1
    exact = float_value.astype(np.float64).reshape(-1, channels)
    error = _dequantized(quantized, scale, zero_point).reshape(-1, channels) - exact
    signal, noise = np.sum(exact ** 2, axis=0), np.sum(error ** 2, axis=0)
    live = signal > 0
    if not live.any():
        return float("nan")  # nanmean over samples leaves it out
    return float(np.min(_db(signal[live], noise[live])))


def _db(signal, noise):
    return 10 * np.log10(signal / np.maximum(noise, np.finfo(np.float64).tiny))


def _table(statistics: dict, graph: "_Graph") -> list[dict]:
    rows = []
    for name, metrics in statistics.items():
        tensor = _verified_tensor(name, graph.producer.keys())
        rows.append({**graph.layer(tensor),
                     "snr_db": round(float(_db(metrics["signal"], metrics["noise"])), 2),
                     "worst_channel_snr_db": round(float(metrics["worst_channel_snr_db"]), 2),
                     "max_abs_error": float(metrics["max_abs_error"])})
    return sorted(rows, key=lambda r: (np.nan_to_num(r["worst_channel_snr_db"], nan=np.inf), r["snr_db"]))


def _verified_tensor(name: str, known=frozenset()) -> str:
    """The quantized tensor a NumericVerify output checks: "NumericVerify/<tensor><digit>:<index>" (as
    debugger.py's _get_operand_name_and_index reads it: the digit is the converter's); the name as it is
    when that is a tensor of the model and the shorter one is not."""
    tensor = name.removeprefix(NUMERIC_VERIFY).rsplit(":", 1)[0]
    if tensor in known and tensor[:-1] not in known:
        return tensor
    return tensor[:-1] if tensor and tensor[-1].isdigit() else tensor


class _Graph:
    """The calibrated float model's ops: which op writes a tensor, which ops read it."""

    def __init__(self, interpreter) -> None:
        details = {d["index"]: d["name"] for d in interpreter.get_tensor_details()}
        signature = interpreter._get_full_signature_list()["serving_default"]["outputs"]  # noqa: SLF001
        # The model's outputs, by signature key: the output names (the SavedModel's; output_<n> in older folders).
        self.outputs = {details[i]: key for key, i in signature.items()}
        self.producer, self.readers = {}, {}
        for op in interpreter._get_ops_details():  # noqa: SLF001 (the debugger itself reads ops this way)
            for index in op["outputs"]:
                self.producer[details.get(index)] = op["op_name"]
            outputs = [details.get(i) for i in op["outputs"]]
            for index in op["inputs"]:
                if index >= 0:
                    self.readers.setdefault(details.get(index), []).extend(outputs)

    def op_of(self, tensor: str) -> str | None:
        return self.producer.get(tensor)

    def layer(self, tensor: str) -> dict:
        return {"tensor": tensor, "op": self.op_of(tensor), "output": self.outputs.get(tensor)}

    def reading(self, tensor: str) -> list[str]:
        """The output tensors of the ops that read `tensor` (their names are what denylisted_nodes takes)."""
        return [t for t in self.readers.get(tensor, []) if t in self.producer]


def _select(selection: Selection, debugger, graph: _Graph, measure, min_snr_db: float, path: Path) -> None:
    def model_with(denied: list[str]) -> tuple[bytes, float]:
        debugger.options = _options(denied)
        selection.tries += 1
        model = debugger.get_nondebug_quantized_model()
        return model, measure(model)

    denied, best = _grow(selection.layers, graph, model_with, min_snr_db)
    selection.float_layers = [graph.layer(t) for t in denied]
    if best is None or best[1] < min_snr_db:
        selection.within_budget, selection.snr_after_db = False, best[1] if best else None
        return
    for tensor in list(denied):  # fewest: each float layer back in int8 while the budget holds
        trial = model_with([t for t in denied if t != tensor])
        if trial[1] >= min_snr_db:
            denied, best = [t for t in denied if t != tensor], trial
    path.write_bytes(best[0])
    selection.snr_after_db = best[1]
    selection.float_layers = [graph.layer(t) for t in denied]


def _grow(layers: list[dict], graph: _Graph, model_with, min_snr_db: float) -> tuple[list[str], tuple | None]:
    """Float layers added worst first, each alone, then with the ops reading its output, until the budget holds
    or MAX_FLOAT_LAYERS; the layers and the last (model, SNR) made."""
    denied: list[str] = []
    best = None
    for layer in layers:
        for step in ([layer["tensor"]], graph.reading(layer["tensor"])):
            added = [t for t in step if t not in denied]
            if not added or len(denied) + len(added) > MAX_FLOAT_LAYERS:
                continue
            denied += added
            best = model_with(denied)
            if best[1] >= min_snr_db:
                return denied, best
    return denied, best


def _float_model(saved_model: Path) -> bytes:
    """The float TFLite model of the same SavedModel: what int8 is measured against here."""
    import tensorflow as tf

    return tf.lite.TFLiteConverter.from_saved_model(str(saved_model)).convert()


def _input_order(interpreter) -> list[str]:
    """Signature input names in the interpreter's input order (the debugger feeds lists)."""
    inputs = interpreter._get_full_signature_list()["serving_default"]["inputs"]  # noqa: SLF001
    by_index = {index: name for name, index in inputs.items()}
    return [by_index[d["index"]] for d in interpreter.get_input_details()]


def _run(interpreter, feeds: list[dict]) -> list[np.ndarray]:
    """Every output of every feed, by the signature's output names, stacked per output in name order."""
    runner = interpreter.get_signature_runner()
    results = [runner(**feed) for feed in feeds]
    return [np.stack([r[name] for r in results]).astype(np.float64) for name in sorted(results[0])]


def _snr(reference: list[np.ndarray], candidate: list[np.ndarray]) -> float:
    signal = sum(float(np.sum(r ** 2)) for r in reference)
    noise = sum(float(np.sum((c - r) ** 2)) for r, c in zip(reference, candidate))
    return round(float(_db(signal, noise)), 2)
