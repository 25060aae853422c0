"""pipeline/inputs.py: seeded shared inputs, their dtypes and ranges, and inputs.npz."""
from __future__ import annotations

import zipfile

import numpy as np
import pytest

from pipeline.config import InputSpec
from pipeline.errors import ConfigError
from pipeline.inputs import (
    EDGE_CASES, TensorSpec, feeds, generate, load_npz, load_user_inputs, sample_labels, save_npz, stack, with_edge_cases,
)

IMAGE = TensorSpec("image", (1, 3, 8, 8), "float32", -0.5, 0.5)
IDS = TensorSpec("ids", (2, 5), "int64", 0, 10)


def test_same_seed_gives_the_same_samples():
    first, second = generate([IMAGE, IDS], samples=3, seed=11), generate([IMAGE, IDS], samples=3, seed=11)
    assert sorted(first) == ["ids", "image"]
    for name in first:
        np.testing.assert_array_equal(first[name], second[name])


def test_another_seed_gives_other_samples():
    first, second = generate([IMAGE], samples=2, seed=0), generate([IMAGE], samples=2, seed=1)
    assert not np.array_equal(first["image"], second["image"])


def test_samples_differ_from_each_other():
    image = generate([IMAGE], samples=2, seed=0)["image"]
    assert not np.array_equal(image[0], image[1])


@pytest.mark.parametrize("dtype", ["float32", "float16", "int64", "int32", "bool"])
def test_dtype_and_stacked_shape(dtype):
    spec = TensorSpec("t", (2, 3), dtype, 0, 4)
    array = generate([spec], samples=5, seed=0)["t"]
    assert array.dtype == np.dtype(dtype)
    assert array.shape == (5, 2, 3)


def test_float_samples_cover_low_to_high():
    array = generate([TensorSpec("t", (4096,), "float32", -0.5, 0.5)], samples=2, seed=0)["t"]
    assert array.min() >= -0.5 and array.max() < 0.5
    # The whole range is used, not a corner of it.
    assert array.min() < -0.49 and array.max() > 0.49


def test_float16_samples_stay_within_low_and_high():
    array = generate([TensorSpec("t", (4096,), "float16", 2.0, 3.0)], samples=2, seed=0)["t"]
    assert array.min() >= 2.0 and array.max() <= 3.0
    assert array.min() < 2.01 and array.max() > 2.99


def test_float16_samples_never_reach_high():
    array = generate([TensorSpec("t", (1, 3, 64, 64), "float16", -0.5, 0.5)], samples=4, seed=0)["t"]
    assert array.max() < 0.5


def test_integers_are_drawn_from_low_up_to_but_excluding_high():
    array = generate([TensorSpec("t", (2000,), "int64", -2, 3)], samples=1, seed=0)["t"]
    assert set(np.unique(array)) == {-2, -1, 0, 1, 2}


def test_integer_bounds_are_rounded_up():
    array = generate([TensorSpec("t", (2000,), "int32", 0.5, 2.5)], samples=1, seed=0)["t"]
    assert set(np.unique(array)) == {1, 2}


def test_integer_range_with_low_equal_high_is_the_constant_low():
    array = generate([TensorSpec("t", (100,), "int64", 4, 4)], samples=1, seed=0)["t"]
    assert set(np.unique(array)) == {4}


def test_bools_take_both_values():
    array = generate([TensorSpec("t", (1000,), "bool")], samples=1, seed=0)["t"]
    assert 0.4 < array.mean() < 0.6


def test_tensor_spec_from_config_and_json_round_trip():
    spec = TensorSpec.from_config(InputSpec(name="x", shape=[1, 3, 4, 4], dtype="float16", low=-1, high=2))
    assert spec == TensorSpec("x", (1, 3, 4, 4), "float16", -1.0, 2.0)
    assert TensorSpec.from_json(spec.to_json()) == spec


def test_feeds_split_samples_and_stack_inverts_them():
    samples = generate([IMAGE, IDS], samples=3, seed=0)
    per_sample = feeds(samples)
    assert len(per_sample) == 3
    assert per_sample[1]["image"].shape == IMAGE.shape
    np.testing.assert_array_equal(per_sample[2]["ids"], samples["ids"][2])
    restacked = stack(per_sample)
    assert sorted(restacked) == sorted(samples)
    for name in samples:
        np.testing.assert_array_equal(restacked[name], samples[name])


def test_save_npz_is_byte_identical_across_saves(tmp_path):
    samples = generate([IMAGE, IDS], samples=2, seed=0)
    reordered = {name: samples[name] for name in reversed(list(samples))}
    save_npz(tmp_path / "a.npz", samples)
    save_npz(tmp_path / "b.npz", reordered)
    assert (tmp_path / "a.npz").read_bytes() == (tmp_path / "b.npz").read_bytes()


def test_save_npz_pins_zip_timestamps_and_leaves_no_temp_file(tmp_path):
    save_npz(tmp_path / "inputs.npz", generate([IMAGE], samples=1, seed=0))
    with zipfile.ZipFile(tmp_path / "inputs.npz") as archive:
        assert [(i.filename, i.date_time) for i in archive.infolist()] == [("image.npy", (1980, 1, 1, 0, 0, 0))]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["inputs.npz"]


def test_save_then_load_npz_round_trips_values_and_dtypes(tmp_path):
    samples = generate([IMAGE, IDS, TensorSpec("mask", (3,), "bool")], samples=2, seed=0)
    samples["transposed"] = np.arange(6, dtype=np.float32).reshape(2, 3).T  # not contiguous
    save_npz(tmp_path / "inputs.npz", samples)
    loaded = load_npz(tmp_path / "inputs.npz")
    assert sorted(loaded) == sorted(samples)
    for name in samples:
        assert loaded[name].dtype == samples[name].dtype
        np.testing.assert_array_equal(loaded[name], samples[name])


# --- edge cases and a user's .npz -------------------------------------------



def test_edge_cases_are_zeros_a_constant_and_the_largest_magnitude():
    specs = [TensorSpec("x", (2, 2), "float32", -1.0, 3.0), TensorSpec("ids", (3,), "int64", 2, 9),
             TensorSpec("mask", (2,), "bool")]
    base = generate(specs, 2, seed=0)
    arrays = with_edge_cases(base, specs)
    assert arrays["x"].shape == (5, 2, 2) and arrays["ids"].shape == (5, 3)
    zeros, constant, largest = arrays["x"][2:]
    assert np.all(zeros == 0) and np.all(constant == constant.flat[0]) and np.all(largest < 3.0) and largest.flat[0] > 2.99
    assert list(arrays["ids"][2:, 0]) == [2, 6, 8]  # 0 is out of [2, 9): clamped to the range; 6 is 3/4 up
    assert constant.flat[0] == pytest.approx(2.0)  # 3/4 of the way up [-1, 3), not the midpoint
    assert list(arrays["mask"][2:, 0]) == [False, True, True]
    assert sample_labels(5, edge_cases=True) == ["random_0", "random_1", *EDGE_CASES]


@pytest.mark.parametrize("low, high, dtype, expected", [(-0.5, 0.5, "float32", 0.25), (0, 100, "int64", 74), (0, 1, "int64", 0)])
def test_the_constant_edge_case_is_away_from_zero_and_the_midpoint(low, high, dtype, expected):
    spec = TensorSpec("x", (2,), dtype, low, high)
    constant = with_edge_cases(generate([spec], 1, seed=0), [spec])["x"][2]
    assert constant.flat[0] == pytest.approx(expected, abs=1e-6)


@pytest.fixture
def x_spec():
    return [TensorSpec("x", (1, 3), "float32", 0.0, 1.0)]


def test_user_inputs_take_one_sample_or_a_sample_axis(tmp_path, x_spec):
    np.savez(tmp_path / "one.npz", x=np.ones((1, 3), np.float32))
    np.savez(tmp_path / "many.npz", x=np.ones((4, 1, 3), np.float32))
    assert load_user_inputs(tmp_path / "one.npz", x_spec)["x"].shape == (1, 1, 3)
    assert load_user_inputs(tmp_path / "many.npz", x_spec)["x"].shape == (4, 1, 3)


@pytest.mark.parametrize("arrays, message", [
    ({"y": np.ones((1, 3), np.float32)}, r"keys must be the model's inputs \['x'\]; missing \['x'\], extra \['y'\]"),
    ({"x": np.ones((1, 3), np.float32), "z": np.ones(1)}, r"missing \[\], extra \['z'\]"),
    ({"x": np.ones((1, 4), np.float32)}, r"'x' has shape \[1, 4\]; expected \[1, 3\] or \[samples, 1, 3\]"),
    ({"x": np.ones((1, 3), np.float64)}, r"'x' has dtype float64, the config says float32; cast it with .astype\('float32'\)"),
])
def test_user_inputs_that_do_not_fit_the_config_are_config_errors(tmp_path, x_spec, arrays, message):
    np.savez(tmp_path / "bad.npz", **arrays)
    with pytest.raises(ConfigError, match=message):
        load_user_inputs(tmp_path / "bad.npz", x_spec)


def test_user_inputs_file_missing_or_unreadable(tmp_path, x_spec):
    with pytest.raises(ConfigError, match="file not found"):
        load_user_inputs(tmp_path / "nope.npz", x_spec)
    (tmp_path / "junk.npz").write_bytes(b"not a zip")
    with pytest.raises(ConfigError, match="not a readable .npz file"):
        load_user_inputs(tmp_path / "junk.npz", x_spec)


def test_a_dynamic_spec_round_trips_and_resizes_only_its_dynamic_axes():
    spec = TensorSpec("x", (1, 3, 8, 8), "float32", dynamic={0: "batch", 2: "height"})
    assert spec.to_json()["dynamic"] == {"0": "batch", "2": "height"}
    assert TensorSpec.from_json(spec.to_json()) == spec
    assert spec.at({"batch": 3, "height": 5, "width": 9}).shape == (3, 3, 5, 8)
    static = TensorSpec("x", (1, 3), "float32")
    assert "dynamic" not in static.to_json() and static.at({"batch": 3}).shape == (1, 3)


def test_float64_inputs_of_an_onnx_file_are_drawn_like_float32_ones():
    """The ONNX route and `make suite` read float64 inputs from the file itself (a config allows float16/32 only)."""
    specs = [TensorSpec("a", (2, 3), "float64", -1.0, 1.0)]
    samples = with_edge_cases(generate(specs, 2, seed=0), specs)["a"]
    assert samples.dtype == np.float64 and samples.shape == (5, 2, 3)
    assert (samples[:2] >= -1.0).all() and (samples[:2] < 1.0).all() and len(np.unique(samples[:2])) == 12
    assert samples[2:, 0, 0].tolist() == [0.0, 0.5, -1.0]  # zeros, constant, the largest magnitude in range
