"""pipeline/audit/oracle_ahead.py: the float64 oracle's runs started while the conversion runs, taken by the
audit only for the same model and the same inputs."""
from __future__ import annotations

import numpy as np
import pytest

from pipeline.artifacts.folder import ArtifactDir
from pipeline.artifacts.records import ExportRecord
from pipeline.audit import oracle_ahead
from pipeline.compare import run_sets
from pipeline.config import load_config
from pipeline.inputs import TensorSpec
from tests.support import write_config

MODEL = '''
import torch

def deep():
    torch.manual_seed(0)
    layers = []
    for _ in range(6):
        layers += [torch.nn.Linear(16, 16), torch.nn.Tanh()]
    return torch.nn.Sequential(*layers)
'''
SPECS = [TensorSpec("x", (2, 16), "float32", -1.0, 1.0)]


@pytest.fixture
def model(tmp_path):
    (tmp_path / "models.py").write_text(MODEL)
    source = load_config(write_config(tmp_path / "deep.yaml", "models.py:deep", [{"name": "x", "shape": [2, 16]}]))
    export = ExportRecord(route="pytorch", source=str(source.path), exporter="dynamo", attempts=[], opset=18,
                          inputs=SPECS, outputs=["y"], reference="pytorch", seed=0)
    yield source, ArtifactDir(tmp_path / "art"), export
    oracle_ahead.take(source, export, [])  # nothing started here is left for another test


def _feeds(seed: int, count: int = 3) -> list[list[dict]]:
    rng = np.random.default_rng(seed)
    return [[{"x": rng.uniform(-1, 1, (2, 16)).astype(np.float32)} for _ in range(count)]]


def test_runs_started_ahead_are_the_runs_the_audit_would_make(model):
    source, artifacts, export = model
    feeds = _feeds(0)
    oracle_ahead.start(source, artifacts, export, feeds)
    ahead = oracle_ahead.take(source, export, feeds)
    direct = run_sets(oracle_ahead.runners(source, artifacts, export), feeds)
    assert ahead is not None and ahead[1] == direct[1] == [{}]
    assert sorted(ahead[0][0]) == ["pytorch_fp64", "pytorch_fp64_perturbed_1", "pytorch_fp64_perturbed_2"]
    for backend, outputs in direct[0][0].items():
        assert ahead[0][0][backend]["y"].dtype == np.float64
        np.testing.assert_allclose(ahead[0][0][backend]["y"], outputs["y"], rtol=1e-12, atol=0)


def test_they_are_taken_only_for_the_same_inputs_and_only_once(model):
    source, artifacts, export = model
    oracle_ahead.start(source, artifacts, export, _feeds(0))
    assert oracle_ahead.take(source, export, _feeds(1)) is None, "other inputs (--samples, --inputs): run again"
    oracle_ahead.start(source, artifacts, export, _feeds(0))
    assert oracle_ahead.take(source, export, _feeds(0)) is not None
    assert oracle_ahead.take(source, export, _feeds(0)) is None, "taken once"
    one_less = [_feeds(0)[0][:2]]
    oracle_ahead.start(source, artifacts, export, _feeds(0))
    assert oracle_ahead.take(source, export, one_less) is None


def test_nothing_is_started_for_the_onnx_route_whose_oracle_is_the_graph(model):
    source, artifacts, export = model
    onnx_route = ExportRecord(route="onnx", source="m.onnx", exporter="none", attempts=[], opset=18, inputs=SPECS,
                              outputs=["y"], reference="onnxruntime", seed=0)
    oracle_ahead.start(source, artifacts, onnx_route, _feeds(0))
    assert oracle_ahead.take(source, onnx_route, _feeds(0)) is None


def test_runs_that_failed_ahead_leave_the_audit_to_run_them(model, monkeypatch):
    source, artifacts, export = model

    def broken(*args):
        raise MemoryError("no room for the float64 copy")

    monkeypatch.setattr(oracle_ahead, "run_sets", broken)
    oracle_ahead.start(source, artifacts, export, _feeds(0))
    assert oracle_ahead.take(source, export, _feeds(0)) is None


def test_runs_nothing_took_are_stopped_between_samples_and_dropped(model, monkeypatch):
    import threading

    source, artifacts, export = model
    ran, running = [], threading.Event()

    def one_sample_at_a_time(runners, feed_sets, between):
        for index in range(1000):
            ran.append(index)  # a sample's forward pass
            if index == 0:
                running.set()
                between.__self__._cancelled.wait(5)  # noqa: SLF001 (the discard comes during this sample)
            between("pytorch_fp64", index)
        return [{}], [{}]

    monkeypatch.setattr(oracle_ahead, "run_sets", one_sample_at_a_time)
    oracle_ahead.start(source, artifacts, export, _feeds(0))
    assert running.wait(5)
    oracle_ahead.discard()
    assert ran == [0], "stopped after the sample it was running, and waited for"
    assert oracle_ahead.take(source, export, _feeds(0)) is None


def test_runs_for_other_inputs_are_stopped_not_waited_for(model, monkeypatch):
    import threading

    source, artifacts, export = model
    release = threading.Event()

    def slow(runners, feed_sets, between):
        for index in range(1000):
            release.wait(0.05)
            between("pytorch_fp64", index)
        return [{}], [{}]

    monkeypatch.setattr(oracle_ahead, "run_sets", slow)
    oracle_ahead.start(source, artifacts, export, _feeds(0))
    assert oracle_ahead.take(source, export, _feeds(1)) is None  # returns after one sample, not 1000
    assert oracle_ahead._ahead is None  # noqa: SLF001


def test_starting_again_for_the_same_inputs_keeps_the_runs_and_for_others_replaces_them(model):
    source, artifacts, export = model
    oracle_ahead.start(source, artifacts, export, _feeds(0))
    first = oracle_ahead._ahead  # noqa: SLF001
    oracle_ahead.start(source, artifacts, export, _feeds(0))  # a convert stage run again after a fallback
    assert oracle_ahead._ahead is first, "not run twice"  # noqa: SLF001
    oracle_ahead.start(source, artifacts, export, _feeds(1))
    assert oracle_ahead._ahead is not first and oracle_ahead.take(source, export, _feeds(1)) is not None  # noqa: SLF001
