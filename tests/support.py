"""Helpers shared by tests (kept out of conftest.py so tests can import them)."""
from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


class NetworkBlocked(RuntimeError):
    pass


def refuse_network(*args, **kwargs):
    raise NetworkBlocked(f"network access attempted: {args[0] if args else kwargs}")


def swallow_signal(number: int) -> None:
    """The signal arrives (sent to this process) and library code swallows its KeyboardInterrupt."""
    try:
        os.kill(os.getpid(), number)
        time.sleep(5)  # the handler raises here
    except KeyboardInterrupt:
        pass


@dataclass
class Run:
    exit_code: int
    root: Path

    @property
    def report(self) -> dict:
        return json.loads((self.root / "report.json").read_text())


def run_cli(*argv: str) -> int:
    from pipeline.cli import main

    return main(list(argv))


def write_config(path: Path, model: str, inputs: list[dict], **keys) -> Path:
    """Write a model config (YAML) to `path`: the factory, the inputs ({name, shape, …}) and any other keys.
    The one config builder of the tests; returns the path."""
    import yaml

    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump({"model": model, "inputs": inputs, **keys}, sort_keys=False))
    return path


def scale_fp16_weights(tflite: Path, factor: float) -> str:
    """Scale the largest float16 constant (a conv's weights) of a TFLite fp16 file in place: an fp16-only
    bug that leaves every other file correct. Returns the tensor's name."""
    import numpy as np
    from tensorflow.lite.tools import flatbuffer_utils

    model = flatbuffer_utils.read_model(str(tflite))
    tensors = [t for t in model.subgraphs[0].tensors if t.type == 1 and model.buffers[t.buffer].data is not None]
    weights = max(tensors, key=lambda t: len(model.buffers[t.buffer].data))
    buffer = model.buffers[weights.buffer]
    values = np.frombuffer(bytes(buffer.data), np.float16) * np.float16(factor)
    buffer.data = np.frombuffer(values.astype(np.float16).tobytes(), np.uint8)
    flatbuffer_utils.write_model(model, str(tflite))
    return weights.name.decode()


def tflite_pair(folder: Path, name: str, function) -> dict[str, Path]:
    """A tf.function's TFLite fp32 and fp16 files, {"fp32": ..., "fp16": ...}: TensorFlow's converter, and its
    float16 quantization of the same graph (each float constant stored as float16 behind a DEQUANTIZE)."""
    import tensorflow as tf

    made = {}
    for precision in ("fp32", "fp16"):
        converter = tf.lite.TFLiteConverter.from_concrete_functions([function.get_concrete_function()], function)
        if precision == "fp16":
            converter.optimizations = [tf.lite.Optimize.DEFAULT]
            converter.target_spec.supported_types = [tf.float16]
        made[precision] = folder / f"{name}_{precision}.tflite"
        made[precision].write_bytes(converter.convert())
    return made
