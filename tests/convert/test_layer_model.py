"""layers.keras is built only when a layer-by-layer comparison asks for it, once per conversion."""
from __future__ import annotations

import json

import pytest

from pipeline.artifacts.folder import ArtifactDir
from pipeline.config import resolve_source
from pipeline.convert import layer_model as module
from pipeline.convert.layer_model import layer_model

pytestmark = pytest.mark.slow


def test_a_conversion_writes_no_layer_model(seed_run):
    assert json.loads((seed_run.root / "convert.json").read_text())["layers"] is None
    assert not (seed_run.root / "layers").exists() and not (seed_run.root / "layers.keras").exists()


def test_the_layer_model_is_built_on_request_then_reused_until_the_conversion_changes(seed_copy, monkeypatch):
    artifacts, source = ArtifactDir(seed_copy), resolve_source("seed_ym")
    built = layer_model(source, artifacts)
    assert built["model"] == "layers/layers.keras" and (seed_copy / built["model"]).exists()
    assert built["tensors"] and all({"tensor", "tf_shape", "channel_last"} <= set(t) for t in built["tensors"])

    def no_rebuild(*args, **kwargs):
        raise AssertionError("the kept layer model should have been reused")

    monkeypatch.setattr(module, "_build", no_rebuild)
    assert layer_model(source, artifacts) == built
    record = seed_copy / "convert.json"
    record.write_text(record.read_text().replace('"notes": [', '"notes": ["changed", ', 1))  # another conversion
    with pytest.raises(AssertionError, match="reused"):
        layer_model(source, artifacts)
