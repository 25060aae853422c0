"""The Keras runner's faster load gives the same model (pipeline/keras_io.py; tests/test_keras_io.py has the details);
the SavedModel runner reads an older folder's positional output keys."""
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


def _save_keyed_by_position(keras_path, saved_model) -> None:
    """saved_model as onnx2tf 1.29's own save wrote it before the signatures carried the config's names:
    serving_default returns output_0, output_1, ... (onnx2tf.py, its ExportArchive endpoint)."""
    import shutil

    import tensorflow as tf
    import tf_keras

    model = tf_keras.models.load_model(str(keras_path), compile=False)
    shutil.rmtree(saved_model)
    archive = tf_keras.export.ExportArchive()
    archive.add_endpoint("serving_default", lambda *inputs: model(inputs),
                         [tf.TensorSpec(t.shape, t.dtype, t.name.split(":")[0]) for t in model.inputs])
    archive.write_out(str(saved_model))


def test_an_older_folder_whose_saved_model_keys_outputs_by_position_is_audited_again(seed_copy, no_network):
    import json

    import tensorflow as tf

    from tests.support import run_cli

    _save_keyed_by_position(seed_copy / "model.keras", seed_copy / "saved_model")
    signature = tf.saved_model.load(str(seed_copy / "saved_model")).signatures["serving_default"]
    assert list(signature.structured_outputs) == ["output_0"]
    assert run_cli("audit", "seed_ym", "--out", str(seed_copy)) == 0
    audit = json.loads((seed_copy / "audit.json").read_text())
    assert [c["verdict"] for c in audit["comparisons"] if c["candidate"] == "tf_saved_model"] == ["pass"]
