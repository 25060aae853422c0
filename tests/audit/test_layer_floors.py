"""pipeline/audit/layer_by_layer.judged_by_floors: every pair against the oracle, PyTorch float32's own
included, is judged and drawn by the noise floor, not the fixed atol."""
from __future__ import annotations

import numpy as np
import pytest

from pipeline.compare import Tolerance
from pipeline.audit.layer_by_layer import BAND, PERTURBED_BAND, judged_by_floors
from pipeline.audit.layer_stats import PairLayers, TensorStats
from pipeline.names import Backend

TOLERANCE = Tolerance(1e-4, 1e-4)


def pair(names: tuple[str, str], error: float) -> PairLayers:
    truth = np.full((1, 8), 1.0)
    stats = TensorStats()
    stats.update(truth, truth + error, TOLERANCE)
    return PairLayers(*names, {"body.60": stats})


def test_pytorch_float32s_own_rounding_is_within_the_floor_not_a_divergence():
    band = pair(BAND, 4e-4)  # a deep network's own float32 rounding, beyond atol + rtol*|ref|
    assert band.stats["body.60"].exceeds
    judged = judged_by_floors([band, pair(PERTURBED_BAND, 2e-4), pair((Backend.ORACLE, "keras"), 8e-3)])
    assert [(p.reference, p.candidate) for p in judged] == [BAND, (Backend.ORACLE, "keras")]
    own, keras = (p.stats["body.60"] for p in judged)
    assert own.exceeds is False and own.noise_ratio <= 1 and own.noise_floor == pytest.approx(4e-4)
    assert keras.exceeds is True and keras.noise_ratio > 9
