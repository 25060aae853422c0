"""The layer-by-layer model (layers/layers.keras), built only when a layer-by-layer comparison runs.

A conversion does not build it: saving a Keras model with every intermediate tensor as an output
costs as much as a Keras file of its own, and a model that passes its audit never needs it. When
a comparison fails (or with `audit --layers`, or in a repair search), the converter builds the
same graph again from the same ONNX file with the same options, in a child process, and only
this model is saved. It is kept with a stamp of the conversion it belongs to, so it is built once.
"""
from __future__ import annotations

import json
from pathlib import Path

from pipeline import profile
from pipeline.artifacts.folder import ArtifactDir, sha256, write_json
from pipeline.artifacts.records import ConvertRecord
from pipeline.config import Source
from pipeline.converters import ConversionOptions, get_converter
from pipeline.errors import ConversionError

FOLDER = "layers"
RECORD = "layers.json"


def layer_model(source: Source, artifacts: ArtifactDir, onnx_path: Path | None = None) -> dict:
    """{"model": path under the artifact folder or None, "tensors": [...], "note": why there is none}.
    `onnx_path`: the file the conversion converted (default: model.rewritten.onnx when its strategy
    converted that, else model.onnx)."""
    convert = artifacts.read(ConvertRecord)
    onnx_path = onnx_path or converted_file(artifacts, convert)
    if convert.layers and (artifacts.root / convert.layers["model"]).exists():  # a record that still has one
        return {**convert.layers, "note": None}
    stamp = _stamp(artifacts, onnx_path)
    record = artifacts.root / FOLDER / RECORD
    if record.exists():
        kept = json.loads(record.read_text())
        if kept.get("stamp") == stamp:
            return kept
    return _build(source, artifacts, onnx_path, convert, stamp)


# Raised when what a layer model records changes: one kept under another version is built again
# (2: tensors named as the ONNX file names them, not as onnx2tf's map does).
FORMAT = 2


def _stamp(artifacts: ArtifactDir, onnx_path: Path) -> str:
    """Which conversion a kept layer model belongs to: its record and its ONNX file, and the format."""
    return f"{sha256(artifacts.stage_record(ConvertRecord.STAGE))[:16]}:{sha256(onnx_path)[:16]}:v{FORMAT}"


def _build(source: Source, artifacts: ArtifactDir, onnx_path: Path, convert: ConvertRecord, stamp: str) -> dict:
    from pipeline.convert.isolate import run_isolated
    from pipeline.convert.stage import limits_for

    converter = get_converter(convert.converter)
    with artifacts.staging() as stage, profile.step("audit: build the layer model (onnx2tf again, no files)"):
        folder = stage / FOLDER
        folder.mkdir()
        try:
            options = options_of(convert.options, artifacts.root)
            made = run_isolated(converter.layer_model, (onnx_path, folder, folder / "layers.log", options),
                                limits_for(source), "layer model")
            path, tensors, note = made.path, made.tensors, made.note
        except ConversionError as exc:
            path, tensors, note = None, [], f"no layer model: {str(exc).split('; full log:')[0]}"
        entry = {"model": f"{FOLDER}/{path.name}" if path else None, "tensors": tensors, "note": note, "stamp": stamp}
        write_json(folder / RECORD, entry)
    return entry


def converted_file(artifacts: ArtifactDir, convert: ConvertRecord) -> Path:
    from pipeline.convert.rewrite import REWRITTEN

    rewritten = artifacts.root / REWRITTEN
    return rewritten if rewritten.exists() and any(REWRITTEN in note for note in convert.notes) else artifacts.onnx


def options_of(recorded: dict, root: Path) -> ConversionOptions:
    """The conversion options convert.json recorded, as the converter takes them (int8 left out:
    the layer model is float); a relative replacement file is in the artifact folder."""
    replacement = recorded.get("param_replacement_file")
    return ConversionOptions(
        keep_nchw_inputs=tuple(recorded.get("keep_nchw_inputs") or ()), use_onnxsim=recorded.get("use_onnxsim", True),
        param_replacement_file=(root / replacement) if replacement else None,
        auto_replacement=recorded.get("auto_replacement", False), pseudo_ops=tuple(recorded.get("pseudo_ops") or ()),
        outputs=("saved_model",),
    )
