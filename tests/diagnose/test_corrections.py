"""pipeline/diagnose/corrections.py: rebuilding a port with corrections keeps its layers and weights;
patching call-time attributes in place gives the same numbers as a rebuild and is undone."""
from __future__ import annotations

import keras
import numpy as np
import pytest

from pipeline.diagnose.corrections import Correction, Edit, Insert, corrected, rebuild


@pytest.fixture(scope="module")
def port():
    rng = np.random.default_rng(0)
    x = inputs = keras.Input((8, 8, 3))
    x = keras.layers.Conv2D(4, 3, strides=2, padding="same", name="conv")(x)
    x = keras.layers.BatchNormalization(name="bn")(x)
    model = keras.Model(inputs, keras.layers.LeakyReLU(name="act")(x))
    bn = model.get_layer("bn")
    bn.set_weights([rng.uniform(0.5, 1.5, 4), rng.normal(size=4), rng.normal(size=4), rng.uniform(1e-3, 1e-2, 4)])
    return model


def _sample() -> np.ndarray:
    return np.random.default_rng(1).uniform(-1, 1, (2, 8, 8, 3)).astype("float32")


EPSILON = Correction("epsilon", edits=(Edit("bn", (("epsilon", 1e-5),)),))
SLOPE = Correction("slope", edits=(Edit("act", (("negative_slope", 0.01),)),))
PADDING = Correction("pad", edits=(Edit("conv", (("padding", "valid"),)),),
                     inserts=(Insert("conv", "ZeroPadding2D", "conv_pad", (("padding", ((1, 1), (1, 1))),)),))


def test_in_place_patch_equals_rebuild_and_is_undone(port):
    expected = np.asarray(rebuild(port, [EPSILON, SLOPE])(_sample()))
    before = np.asarray(port(_sample()))
    with corrected(port, [EPSILON, SLOPE]) as model:
        assert model is port
        np.testing.assert_allclose(np.asarray(model(_sample())), expected, rtol=1e-6, atol=1e-6)
    assert port.get_layer("bn").epsilon == pytest.approx(1e-3)
    np.testing.assert_array_equal(np.asarray(port(_sample())), before)


def test_insert_rebuilds_with_the_same_weights(port):
    fixed = rebuild(port, [PADDING])
    assert type(fixed.get_layer("conv_pad")).__name__ == "ZeroPadding2D"
    assert fixed.get_layer("conv").padding == "valid"
    for name in ("conv", "bn"):
        for ours, theirs in zip(fixed.get_layer(name).get_weights(), port.get_layer(name).get_weights()):
            np.testing.assert_array_equal(ours, theirs)
    assert port.get_layer("conv").padding == "same"  # the port itself is untouched
    with corrected(port, [PADDING]) as model:
        assert model is not port
