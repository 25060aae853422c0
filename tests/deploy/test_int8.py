"""int8 cost figures: SNR and top-k agreement over the class axis."""
from __future__ import annotations

import numpy as np
import pytest

from pipeline.compare import agreement, metrics
from pipeline.deploy.int8 import NO_CALIBRATION, summary


def test_agreement_on_logits_uses_the_last_axis():
    ref = np.array([[[0.1, 0.9, 0.0]], [[0.8, 0.1, 0.1]]])  # (samples, batch, classes)
    cand = np.array([[[0.2, 0.7, 0.1]], [[0.1, 0.8, 0.1]]])
    assert agreement(ref, cand) == (pytest.approx(0.5), pytest.approx(1.0))


def test_agreement_on_feature_maps_is_per_position_over_channels():
    ref = np.zeros((1, 1, 3, 2, 2))
    ref[0, 0, 1] = 1.0  # channel 1 wins everywhere
    cand = ref.copy()
    cand[0, 0, 2, 0, 0] = 2.0  # one position of four disagrees
    top1, top5 = agreement(ref, cand)
    assert top1 == pytest.approx(0.75)
    assert top5 == pytest.approx(1.0)


def test_agreement_is_none_without_a_class_axis():
    assert agreement(np.zeros((2, 5)), np.zeros((2, 5))) == (None, None)


def test_metrics_snr_and_errors():
    ref = np.ones((2, 1, 10), np.float32)
    cand = ref + 0.1
    m = metrics(ref, cand)
    assert m["max_abs"] == pytest.approx(0.1, rel=1e-5)
    assert m["snr_db"] == pytest.approx(20.0, abs=1e-3)


def test_summary_says_why_there_is_no_int8(tmp_path):
    assert summary(tmp_path, {}, {"options": {"int8": None}, "models": {}}, {}) == {"int8": None, "note": NO_CALIBRATION}
