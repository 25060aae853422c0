"""The per-layer figures of convert/int8_layers.py, on arrays made here (no TensorFlow)."""
from __future__ import annotations

import numpy as np
import pytest

from pipeline.convert.int8_layers import _noise, _signal, _snr, _table, _verified_tensor, _worst_channel_snr


def _quantized(values: np.ndarray, scale: float, zero_point: int = 0) -> np.ndarray:
    return np.clip(np.round(values / scale) + zero_point, -128, 127).astype(np.int8)


def test_a_channel_crushed_by_another_channels_range_shows_in_the_worst_channel_only():
    rng = np.random.default_rng(0)
    values = rng.uniform(0, 1, (1, 4, 4, 3)).astype(np.float32)
    values[..., 0] *= 300  # one channel's range sets the tensor's single scale
    scale = float(values.max()) / 127
    quantized = _quantized(values, scale)
    whole = 10 * np.log10(_signal(values, quantized, scale, 0) / _noise(values, quantized, scale, 0))
    assert whole > 30  # the outlier channel dominates the tensor's energy
    assert _worst_channel_snr(values, quantized, scale, 0) < 5  # the others have a level or two left


def test_a_well_scaled_tensor_has_a_high_worst_channel_snr():
    values = np.random.default_rng(1).uniform(-1, 1, (1, 4, 4, 3)).astype(np.float32)
    scale = float(np.abs(values).max()) / 127
    assert _worst_channel_snr(values, _quantized(values, scale), scale, 0) > 30


def test_dead_channels_are_left_out_and_an_all_dead_tensor_has_no_figure():
    values = np.zeros((1, 2, 2, 2), np.float32)
    values[..., 1] = 0.5
    assert _worst_channel_snr(values, _quantized(values, 0.01), 0.01, 0) > 40
    assert np.isnan(_worst_channel_snr(np.zeros((1, 2, 2), np.float32), np.zeros((1, 2, 2), np.int8), 0.1, 0))


def test_numeric_verify_names_give_the_quantized_tensor():
    assert _verified_tensor("NumericVerify/model/tf.nn.relu_1/Relu;model/tf.nn.convolution_1/convolution1:21") == \
        "model/tf.nn.relu_1/Relu;model/tf.nn.convolution_1/convolution"
    assert _verified_tensor("NumericVerify/PartitionedCall:02:29") == "PartitionedCall:0"


def test_a_tensor_whose_own_name_ends_in_a_digit_keeps_it_when_the_model_has_it():
    assert _verified_tensor("NumericVerify/model/add_3:7", known={"model/add_3"}) == "model/add_3"
    assert _verified_tensor("NumericVerify/model/add_31:7", known={"model/add_3"}) == "model/add_3"


class _OneOpGraph:
    producer = {"a": "CONV_2D", "b": "CONV_2D", "c": "CONV_2D"}

    def layer(self, tensor: str) -> dict:
        return {"tensor": tensor, "op": "CONV_2D", "output": None}


def test_the_table_is_worst_channel_first_with_dead_layers_last():
    stats = {f"NumericVerify/{name}:{i}": {"signal": 1.0, "noise": noise, "worst_channel_snr_db": worst, "max_abs_error": 0.1}
             for i, (name, noise, worst) in enumerate([("a", 1e-4, 30.0), ("b", 1e-3, float("nan")), ("c", 1e-5, 2.0)])}
    table = _table(stats, _OneOpGraph())
    assert [row["tensor"] for row in table] == ["c", "a", "b"]
    assert table[0]["snr_db"] == pytest.approx(50.0)


def test_model_snr_sums_energy_over_every_output():
    reference = [np.ones((2, 3)), np.full((2, 1), 2.0)]
    candidate = [np.ones((2, 3)) * 1.1, np.full((2, 1), 2.0)]
    assert _snr(reference, candidate) == pytest.approx(10 * np.log10((6 + 8) / (6 * 0.01)), abs=0.01)
