"""int8 calibration data: an .npz of model-ready inputs or a folder of images, preprocessed."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from pipeline.artifacts.folder import ArtifactDir
from tests.support import write_config
from pipeline.config import PreprocessConfig, load_config
from pipeline.convert.calibration import load, preprocess_image, request
from pipeline.errors import ConfigError
from pipeline.inputs import TensorSpec

SPEC = TensorSpec("x", (1, 3, 8, 6), "float32")


def _images(folder: Path, count: int, size=(12, 10)) -> Path:
    from PIL import Image

    folder.mkdir()
    for i in range(count):
        pixels = np.full((size[1], size[0], 3), (i * 40, 128, 255), dtype=np.uint8)
        Image.fromarray(pixels).save(folder / f"img{i}.png")
    (folder / "notes.txt").write_text("not an image")
    return folder


def test_npz_samples_are_cut_to_the_configured_count(tmp_path):
    np.savez(tmp_path / "c.npz", x=np.ones((5, 1, 3, 8, 6), np.float32))
    arrays, origin = load(tmp_path / "c.npz", [SPEC], None, samples=3)
    assert arrays["x"].shape == (3, 1, 3, 8, 6)
    assert origin == "3 samples from c.npz"


def test_images_are_resized_scaled_normalised_and_laid_out(tmp_path):
    folder = _images(tmp_path / "imgs", 4)
    pre = PreprocessConfig(resize=[8, 6], mean=[0.5, 0.5, 0.5], std=[0.25, 0.5, 1.0], layout="nchw")
    arrays, origin = load(folder, [SPEC], pre, samples=3)
    assert arrays["x"].shape == (3, 1, 3, 8, 6) and arrays["x"].dtype == np.float32
    assert origin.startswith("3 images from imgs/")
    assert arrays["x"][1, 0, 0] == pytest.approx(np.full((8, 6), (40 / 255 - 0.5) / 0.25), abs=1e-5)
    assert arrays["x"][1, 0, 2] == pytest.approx(np.full((8, 6), 0.5), abs=1e-5)


def test_nhwc_layout_puts_channels_last(tmp_path):
    folder = _images(tmp_path / "imgs", 1)
    image = preprocess_image(next(folder.glob("*.png")), (1, 8, 6, 3), PreprocessConfig(layout="nhwc"))
    assert image.shape == (8, 6, 3)
    assert image[0, 0] == pytest.approx([0.0, 128 / 255, 1.0], abs=1e-5)


@pytest.mark.parametrize("make, match", [
    (lambda p: _images(p / "imgs", 0), "no images"),
    (lambda p: p / "missing.npz", "neither an .npz file nor a folder"),
])
def test_unusable_calibration_is_a_config_error(tmp_path, make, match):
    with pytest.raises(ConfigError, match=match):
        load(make(tmp_path), [SPEC], None, samples=3)


def test_resize_must_match_the_input(tmp_path):
    folder = _images(tmp_path / "imgs", 1)
    with pytest.raises(ConfigError, match=r"preprocess.resize \[4, 4\] does not match"):
        load(folder, [SPEC], PreprocessConfig(resize=[4, 4]), samples=1)


def test_integer_inputs_cannot_be_calibrated(tmp_path):
    with pytest.raises(ConfigError, match="needs float32 inputs; \\['ids'\\]"):
        load(tmp_path, [TensorSpec("ids", (1, 8), "int64")], None, samples=1)


def _config(tmp_path: Path, extra: str):
    import yaml

    path = write_config(tmp_path / "cfg.yaml", "pipeline.zoo.seed:build", [{"name": "x", "shape": [1, 3, 8, 6]}], name="t",
                        **(yaml.safe_load(extra) or {}))
    return load_config(path)


def test_request_is_none_without_quantize(tmp_path):
    assert request(_config(tmp_path, ""), ArtifactDir(tmp_path / "art"), [SPEC]) is None


def test_request_writes_the_calibration_file_relative_to_the_config(tmp_path):
    np.savez(tmp_path / "c.npz", x=np.ones((2, 1, 3, 8, 6), np.float32))
    source = _config(tmp_path, "quantize:\n  int8: {calibration: c.npz, integer_io: true}\n")
    artifacts = ArtifactDir(tmp_path / "art")
    artifacts.root.mkdir()
    int8 = request(source, artifacts, [SPEC])
    assert int8.mode == "full_integer" and int8.integer_io and int8.samples == 2
    assert int8.calibration == artifacts.root / "calibration.npz" and int8.calibration.exists()
    assert int8.origin.startswith("2 samples from c.npz, sha256 ")


@pytest.mark.parametrize("extra, match", [
    ("quantize:\n  int8: {calibraton: c.npz}\n", "unknown key 'quantize.int8.calibraton'; did you mean 'calibration'"),
    ("quantize:\n  int8: {mode: full_integer}\n", "full_integer needs 'calibration'"),
    ("quantize:\n  int8: {calibration: c.npz, mode: int4}\n", "quantize.int8.mode"),
    ("preprocess: {mean: [0.5], stdd: [0.2]}\n", "unknown key 'preprocess.stdd'; did you mean 'std'"),
    ("preprocess: {std: [0.0]}\n", "std must not hold 0"),
])
def test_config_keys_are_checked(tmp_path, extra, match):
    with pytest.raises(ConfigError, match=match):
        _config(tmp_path, extra)


def test_dynamic_range_needs_no_calibration(tmp_path):
    source = _config(tmp_path, "quantize:\n  int8: {mode: dynamic_range}\n")
    int8 = request(source, ArtifactDir(tmp_path / "art"), [SPEC])
    assert int8.mode == "dynamic_range" and int8.calibration is None


@pytest.mark.parametrize("shape", [(1, 3, 8, 6), (5, 1, 3, 8, 6), (5, 3, 8, 6)])
def test_npz_accepts_one_sample_stacked_samples_or_a_batch(tmp_path, shape):
    np.savez(tmp_path / "c.npz", x=np.ones(shape, np.float64))
    arrays, _ = load(tmp_path / "c.npz", [SPEC], None, samples=100)
    assert arrays["x"].shape == (1 if len(shape) == 4 and shape[0] == 1 else 5, 1, 3, 8, 6)
    assert arrays["x"].dtype == np.float32


@pytest.mark.parametrize("arrays, match", [
    ({"y": np.ones((2, 1, 3, 8, 6), np.float32)}, r"must hold one array per input \['x'\]; it holds \['y'\]"),
    ({"x": np.ones((2, 3, 8, 7), np.float32)}, r"'x' in c.npz has shape \[2, 3, 8, 7\]; expected \[1, 3, 8, 6\]"),
    ({"x": np.ones((2, 1, 3, 8, 6), np.int64)}, "has dtype int64; expected floats"),
])
def test_npz_mismatches_are_named(tmp_path, arrays, match):
    np.savez(tmp_path / "c.npz", **arrays)
    with pytest.raises(ConfigError, match=match):
        load(tmp_path / "c.npz", [SPEC], None, samples=3)
