"""int8 calibration data from the config: an .npz of model-ready inputs, or a folder of images
preprocessed with the config's `preprocess` (resize, scale to [0, 1], mean/std, layout).

The result is one .npz in the reference layout with a leading sample axis (as inputs.npz),
which the converter adapter turns into its own calibration files. Without calibration data
no int8 model is made: nothing is ever calibrated on random data.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from pipeline import inputs as shared_inputs
from pipeline.artifacts.folder import ArtifactDir, sha256
from pipeline.config import PreprocessConfig, Source
from pipeline.converters.base import Int8Request
from pipeline.errors import ConfigError
from pipeline.inputs import TensorSpec

CALIBRATION = "calibration.npz"
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".ppm", ".tif", ".tiff")


def request(source: Source, artifacts: ArtifactDir, specs: list[TensorSpec]) -> Int8Request | None:
    """The int8 request for the converter, with its calibration file written; None when not asked."""
    config = source.config
    int8 = config.quantize.int8 if config is not None else None
    if int8 is None:
        return None
    if int8.mode == "dynamic_range" and not int8.calibration:
        return Int8Request(None, "dynamic_range", int8.integer_io, 0, "weights only, so no calibration data is needed")
    given = (source.base_dir / int8.calibration).resolve()
    arrays, origin = load(given, specs, config.preprocess, int8.samples)
    target = artifacts.root / CALIBRATION
    shared_inputs.save_npz(target, arrays)
    count = len(next(iter(arrays.values())))
    return Int8Request(target, int8.mode, int8.integer_io, count, f"{origin}, sha256 {sha256(target)[:16]}")


def load(path: Path, specs: list[TensorSpec], preprocess: PreprocessConfig | None, samples: int) -> tuple[dict[str, np.ndarray], str]:
    """At most `samples` calibration samples per input, stacked on a leading axis, and where they came from."""
    non_float = [s.name for s in specs if s.dtype != "float32"]
    if non_float:
        raise ConfigError(f"quantize.int8: int8 calibration needs float32 inputs; {non_float} are not")
    if path.is_dir():
        return _images(path, specs, preprocess or PreprocessConfig(), samples)
    if path.suffix == ".npz" and path.is_file():
        arrays = {name: array[:samples] for name, array in npz_samples(path, specs).items()}
        return arrays, f"{len(next(iter(arrays.values())))} samples from {path.name}"
    raise ConfigError(f"quantize.int8.calibration: {path} is neither an .npz file nor a folder of images; check the path")


def npz_samples(path: Path, specs: list[TensorSpec]) -> dict[str, np.ndarray]:
    """Each input's samples, stacked on a leading axis, as float32. Accepted per input: one sample
    (the input's shape), samples of it ([N, *shape]), or for a batch-1 input a batch ([N, *shape[1:]])."""
    with np.load(path, allow_pickle=False) as archive:
        raw = {name: archive[name] for name in archive.files}
    names = [s.name for s in specs]
    if sorted(raw) != sorted(names):
        raise ConfigError(f"quantize.int8.calibration: {path.name} must hold one array per input {names}; "
                          f"it holds {sorted(raw)}")
    arrays = {spec.name: _as_samples(path, spec, raw[spec.name]) for spec in specs}
    counts = {len(a) for a in arrays.values()}
    if len(counts) != 1:
        raise ConfigError(f"quantize.int8.calibration: {path.name} holds different sample counts per input {sorted(counts)}")
    return arrays


def _as_samples(path: Path, spec: TensorSpec, array: np.ndarray) -> np.ndarray:
    if not np.issubdtype(array.dtype, np.floating):
        raise ConfigError(f"quantize.int8.calibration: '{spec.name}' in {path.name} has dtype {array.dtype}; expected floats")
    shape = tuple(spec.shape)
    if array.shape == shape:
        array = array[None]
    elif shape and shape[0] == 1 and array.shape[1:] == shape[1:] and array.shape[1:2] != (1,):
        array = array[:, None]
    if array.shape[1:] != shape:
        raise ConfigError(f"quantize.int8.calibration: '{spec.name}' in {path.name} has shape {list(array.shape)}; expected "
                          f"{list(shape)}, [samples, *{list(shape)}] or, for batch 1, [samples, *{list(shape[1:])}]")
    return array.astype(np.float32)


def _images(folder: Path, specs: list[TensorSpec], preprocess: PreprocessConfig, samples: int) -> tuple[dict[str, np.ndarray], str]:
    if len(specs) != 1 or len(specs[0].shape) != 4 or specs[0].shape[0] != 1:
        raise ConfigError("quantize.int8.calibration: a folder of images needs one input of shape [1, C, H, W] "
                          "(or [1, H, W, C]); give an .npz with every input instead")
    files = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)[:samples]
    if not files:
        raise ConfigError(f"quantize.int8.calibration: no images ({', '.join(IMAGE_SUFFIXES)}) in {folder}")
    spec = specs[0]
    batch = np.stack([preprocess_image(f, spec.shape, preprocess)[None] for f in files])
    return {spec.name: batch.astype(np.float32)}, f"{len(files)} images from {folder.name}/ ({_described(preprocess)})"


def preprocess_image(path: Path, shape: tuple[int, ...], preprocess: PreprocessConfig) -> np.ndarray:
    """One image as the model takes it: (C, H, W) for nchw, (H, W, C) for nhwc."""
    from PIL import Image

    channel_first = preprocess.layout == "nchw"
    channels, height, width = (shape[1], shape[2], shape[3]) if channel_first else (shape[3], shape[1], shape[2])
    if preprocess.resize and tuple(preprocess.resize) != (height, width):
        raise ConfigError(f"preprocess.resize {preprocess.resize} does not match the input's height and width "
                          f"[{height}, {width}]; fix one of them")
    if channels not in (1, 3):
        raise ConfigError(f"preprocess: images need 1 or 3 channels, the input has {channels} (layout {preprocess.layout})")
    with Image.open(path) as image:
        image = image.convert("RGB" if channels == 3 else "L").resize((width, height), Image.BILINEAR)
        pixels = np.asarray(image, dtype=np.float32) / 255.0
    pixels = pixels.reshape(height, width, channels)
    pixels = (pixels - np.asarray(preprocess.mean, np.float32)) / np.asarray(preprocess.std, np.float32)
    return np.transpose(pixels, (2, 0, 1)) if channel_first else pixels


def _described(preprocess: PreprocessConfig) -> str:
    return f"resize {preprocess.resize}, /255, mean {preprocess.mean}, std {preprocess.std}, {preprocess.layout}"
