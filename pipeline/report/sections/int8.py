"""The int8 section of report.md and report.html: each quantized layer's SNR, worst first, and the
layers the selective int8 file keeps in float, with each int8 file's size, SNR and top-1.

Reads int8.json (records.Int8Record) when this conversion made model_int8.tflite (an int8.json left by an
earlier conversion whose int8 file this one did not make is not shown).
"""
from __future__ import annotations

import html as html_text

from pipeline.artifacts.folder import ArtifactDir
from pipeline.artifacts.records import ConvertRecord, Int8Record

KEY = "int8"
ORDER = 20  # after the fp16 cure: the lower precisions in order

TITLE = "int8: each quantized layer"
HEADERS = ["layer (TFLite tensor)", "ONNX nodes", "module", "SNR dB", "worst channel SNR dB", "kept in float"]
FILE_HEADERS = ["file", "size (bytes)", "SNR dB", "top-1"]
SHOWN = 12  # the worst layers shown; int8.json holds them all


def _rows(int8: dict) -> list[list[str]]:
    floats = {layer["tensor"] for layer in int8["float_layers"]} if int8["selective"] else set()
    return [[_short(layer["tensor"]), ", ".join(layer["onnx_nodes"]) or _unmapped(layer), _module(layer),
             _db(layer["snr_db"]), _db(layer["worst_channel_snr_db"]), "yes" if layer["tensor"] in floats else ""]
            for layer in int8["layers"][:SHOWN]]


def _file_rows(int8: dict) -> list[list[str]]:
    return [[name, str(entry["size"]), _db(entry["snr_db"]),
             "n/a" if entry["top1_agreement"] is None else f"{entry['top1_agreement']:.3f}"]
            for name, entry in int8["files"].items()]


def _lead(int8: dict) -> list[str]:
    return [f"Calibrated on {int8['calibration']}; measured on {int8['evaluated_on']}, against the reference; "
            f"budget: SNR >= {int8['min_snr_db']:g} dB. Each layer's SNR is its own error (the float op on the "
            "same quantized inputs), over the whole tensor and for its worst channel.", *int8["notes"]]


def markdown(int8: dict | None) -> list[str]:
    if not int8:
        return []
    lines = ["", f"## {TITLE}", "", *[f"- {line}" for line in _lead(int8)], ""]
    lines += ["| " + " | ".join(FILE_HEADERS) + " |", "|" + "---|" * len(FILE_HEADERS)]
    lines += ["| " + " | ".join(f"`{row[0]}`" if i == 0 else cell for i, cell in enumerate(row)) + " |" for row in _file_rows(int8)]
    lines += ["", "| " + " | ".join(HEADERS) + " |", "|" + "---|" * len(HEADERS)]
    lines += ["| " + " | ".join(cell.replace("|", "/") for cell in row) + " |" for row in _rows(int8)]
    return lines


def collect(artifacts: ArtifactDir) -> dict | None:
    record = artifacts.read_if_any(Int8Record)
    convert = artifacts.read_if_any(ConvertRecord)
    return record.to_json() if record and convert and "tflite_int8" in convert.models else None


def html(int8: dict | None) -> str:
    if not int8:
        return ""
    lead = "".join(f"<li>{html_text.escape(line)}</li>" for line in _lead(int8))
    body = [f"<ul>{lead}</ul>", _table(FILE_HEADERS, _file_rows(int8)), _table(HEADERS, _rows(int8))]
    return f'<section id="int8">\n<h2>{html_text.escape(TITLE)}</h2>\n' + "\n".join(body) + "\n</section>"


def _table(headers: list[str], rows: list[list[str]]) -> str:
    head = "<tr>" + "".join(f"<th>{html_text.escape(h)}</th>" for h in headers) + "</tr>"
    body = "".join("<tr>" + "".join(f"<td>{html_text.escape(cell)}</td>" for cell in row) + "</tr>" for row in rows)
    return f"<table>{head}{body}</table>"


def _unmapped(layer: dict) -> str:
    feeds = layer.get("feeds")
    return f"unmapped (feeds {', '.join(feeds)})" if feeds else "unmapped"


def _module(layer: dict) -> str:
    if layer["module"] is None:
        return "none (the model's own forward)"
    return f"unmapped (feeds {layer['feeds_module']})" if layer["module"] == "unmapped" and layer.get("feeds_module") else layer["module"]


def _short(tensor: str) -> str:
    """A fused tensor's first op without the model's name ("model_3/tf.nn.relu_1/Relu;..." -> "tf.nn.relu_1/Relu");
    int8.json has the full name."""
    first = tensor.split(";")[0]
    return first.split("/", 1)[1] if first.count("/") >= 2 else first


def _db(value) -> str:
    return "n/a" if value is None else f"{value:.1f}"
