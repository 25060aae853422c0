"""The Keras runner's faster load gives the same model (pipeline/keras_io.py; tests/test_keras_io.py has the details)."""
from __future__ import annotations

import numpy as np
import pytest

pytestmark = pytest.mark.slow


def test_the_fast_load_gives_the_same_weights_and_outputs(seed_run):
    tf_keras = pytest.importorskip("tf_keras")
    from pipeline.keras_io import fast_load

    path = str(seed_run.root / "model.keras")
    plain = tf_keras.models.load_model(path, safe_mode=True, compile=False)
    with fast_load():
        fast = tf_keras.models.load_model(path, safe_mode=True, compile=False)
    from tf_keras.src.saving import saving_lib

    assert "_tracking_metadata" not in saving_lib.ATTR_SKIPLIST, "the skip list is restored"
    assert len(plain.weights) == len(fast.weights)
    for a, b in zip(plain.get_weights(), fast.get_weights()):
        np.testing.assert_array_equal(a, b)
    x = np.random.default_rng(0).random([d or 1 for d in plain.inputs[0].shape]).astype(np.float32)
    np.testing.assert_array_equal(plain(x).numpy(), fast(x).numpy())
