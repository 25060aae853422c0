"""What int8 costs, for the manifest and the card: each int8 TFLite file against PyTorch (the
reference) and against TFLite fp32, as max/mean error, SNR and top-1/top-5 agreement.

The audit judges tflite_int8 by its precision budget; this adds the comparison with fp32 (what
quantization alone costs) and the integer-I/O variant, which the audit does not run.
Agreement is over the class axis: the last one for (batch, classes) outputs, the channel axis
for feature maps (per position), so it also means something for a detector or a segmenter.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from pipeline import inputs as shared_inputs
from pipeline.compare import metrics

NO_CALIBRATION = ("no int8 TFLite: no calibration data was given (config key quantize.int8.calibration); "
                  "nothing is calibrated on random data")
INT8_BACKENDS = ("tflite_int8", "tflite_int8_integer_io", "tflite_int8_selective")


def summary(root: Path, export: dict, convert: dict, audit: dict) -> dict:
    request = (convert.get("options") or {}).get("int8")
    if not request:
        return {"int8": None, "note": NO_CALIBRATION}
    reference = _load(root / "outputs" / f"{audit['reference']}.npz")
    fp32 = _load(root / "outputs" / "tflite_fp32.npz")
    files = {}
    for backend in INT8_BACKENDS:
        if backend not in convert["models"]:
            continue
        outputs = _outputs(root, backend, export, convert)
        files[convert["models"][backend]] = {
            "backend": backend, "audit_verdict": _audit_verdict(audit, backend),
            "vs_reference": _metrics(reference, outputs), "vs_tflite_fp32": _metrics(fp32, outputs) if fp32 else None,
        }
    calibration = {k: v for k, v in request.items() if k != "calibration"}
    return {"int8": {**calibration, "files": files, **_layers(root)},
            "note": None if files else "onnx2tf wrote no int8 file (see convert.log)"}


def _layers(root: Path) -> dict:
    """int8.json's per-layer table and selective file, as the convert stage recorded them (not measured again)."""
    from pipeline.artifacts.folder import ArtifactDir
    from pipeline.artifacts.records import Int8Record

    record = ArtifactDir(root).read_if_any(Int8Record)
    if record is None:
        return {}
    return {"layers": record.layers, "float_layers": record.float_layers, "selective": record.selective,
            "before_after": {name: {k: v for k, v in entry.items() if k != "outputs"} for name, entry in record.files.items()},
            "evaluated_on": record.evaluated_on, "min_snr_db": record.min_snr_db}


def _outputs(root: Path, backend: str, export: dict, convert: dict) -> dict[str, np.ndarray] | str:
    saved = root / "outputs" / f"{backend}.npz"
    if saved.exists():
        return _load(saved)
    from pipeline.deploy.rerun import runner as _runner
    from pipeline.compare import run_all
    from pipeline.errors import RunnerError

    feeds = shared_inputs.feeds(shared_inputs.load_npz(root / "inputs.npz"))
    try:
        return run_all([_runner(root, backend, {"export": export, "convert": convert})], feeds)[backend]
    except RunnerError as exc:
        return str(exc)


def _audit_verdict(audit: dict, backend: str) -> str:
    verdicts = [c.get("verdict") for c in audit["comparisons"] if c["candidate"] == backend]
    return verdicts[0] if len(set(verdicts)) == 1 else ("not audited" if not verdicts else "fail")


def _metrics(reference: dict[str, np.ndarray], outputs: dict[str, np.ndarray] | str) -> dict:
    if isinstance(outputs, str):
        return {"error": outputs}
    return {name: metrics(ref, outputs[name]) for name, ref in reference.items() if name in outputs}


def _load(path: Path) -> dict[str, np.ndarray]:
    return shared_inputs.load_npz(path) if path.exists() else {}
