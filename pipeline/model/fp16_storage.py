"""What a correct TFLite fp16 file computes: the converter's own float32 TFLite file with every float
constant rounded through float16, the reference an fp16 file is judged against.

TF's converter makes both files from the same SavedModel with the same foldings (a BatchNorm folded into
its conv, a layer scale into the weights in front of it, constants folded); the fp16 file then stores each
float constant as float16 and dequantizes it to float32 before computing on the CPU (its compute ops align
one to one with the float32 file's: it adds only Dequantize ops). So the float32 file with its constants
rounded the same way is that file's exact float32 program: a correct fp16 file lands within float32
rounding of it (seed_ym: bit for bit), at any depth, whatever the converter folded. An fp16-only bug (one
weight tensor scaled by 1.02) does not. What storage itself costs (the distance from PyTorch) is the
precision cost, reported apart.

A rounding of the original ONNX graph's constants would miss the converter's foldings: on ConvNeXt (a
layer scale of 1e-6 folded into the weights before they are rounded) it put a correct file 24x beyond
the bound. A bug common to both files is the float32 file's own, judged there.
"""
from __future__ import annotations

import functools
import tempfile
from pathlib import Path

import numpy as np

FLOAT16_MAX = float(np.finfo(np.float16).max)  # 65504


def round_to_float16(values: np.ndarray) -> np.ndarray:
    """float32 values as a TFLite fp16 file stores them: rounded to nearest even, subnormals kept, and
    finite values beyond ±65504 clamped to it, as TF's converter does (measured, TF 2.21: a -1e9 mask is
    stored as -65504, where a plain float16 cast would make it -inf)."""
    values = np.asarray(values, np.float32)
    clamped = np.where(np.isfinite(values), np.clip(values, -FLOAT16_MAX, FLOAT16_MAX), values)
    return clamped.astype(np.float16).astype(np.float32)


FLUSHED = float(np.finfo(np.float16).smallest_subnormal) / 2  # below this, float16 stores 0


def stored_as_fp16(fp32_tflite: Path, out: Path, cured: bool = False) -> int:
    """Write `out`: the float32 TFLite file with every float32 constant buffer rounded through float16
    (LiteRT's own flatbuffer schema; no TensorFlow). Returns how many constants were rounded.

    `cured`: the fp16 file was made from the fp16 cure's graph (pipeline/convert/fp16_cure.py), which
    raises each epsilon float16 stores as 0 to its smallest normal; a scalar constant that would be
    stored as 0 is raised the same way here, so the reference is the cured file's program."""
    import flatbuffers
    from ai_edge_litert import schema_py_generated as schema

    data = Path(fp32_tflite).read_bytes()
    model = schema.ModelT.InitFromPackedBuf(bytearray(data), 0)
    rounded = 0
    for subgraph in model.subgraphs or []:
        for tensor in subgraph.tensors or []:
            buffer = model.buffers[tensor.buffer]
            if tensor.type == schema.TensorType.FLOAT32 and buffer.data is not None and len(buffer.data):
                values = np.frombuffer(bytes(bytearray(buffer.data)), np.float32)
                if cured and values.size == 1 and 0 < abs(values[0]) < FLUSHED:
                    values = np.sign(values) * np.float32(np.finfo(np.float16).tiny)
                buffer.data = np.frombuffer(round_to_float16(values).tobytes(), np.uint8)
                rounded += 1
    builder = flatbuffers.Builder(len(data) + 1024)
    builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
    Path(out).write_bytes(builder.Output())
    return rounded


# The rounded file of the last fp32 file asked for, kept for this process (one at a time, in a temporary folder
# removed at exit): an audit at several shapes runs it at each, and it does not depend on the shape.
_made: dict[tuple, Path] = {}
_folder = functools.cache(lambda: tempfile.TemporaryDirectory(prefix="fp16-storage-"))


def stored_file(fp32_tflite: Path, cured: bool = False) -> Path:
    """stored_as_fp16's file for `fp32_tflite`, made once while that file stays the same (by its identity:
    device, inode, size, modification time; a rewritten file is rounded again)."""
    from pipeline.artifacts.folder import identity

    key = (identity(Path(fp32_tflite)), cured)
    if key not in _made:
        for old in _made.values():
            old.unlink(missing_ok=True)
        _made.clear()
        out = Path(_folder().name) / "stored_as_fp16.tflite"
        stored_as_fp16(fp32_tflite, out, cured)
        _made[key] = out
    return _made[key]
