"""pipeline/runners/torch_runner.py: the float64 oracle, and a model that cannot be one."""
from __future__ import annotations

import numpy as np
import pytest

from pipeline.config import load_config
from pipeline.errors import RunnerError
from pipeline.inputs import TensorSpec
from pipeline.runners.torch_runner import TorchFloat64Runner, TorchRunner
from tests.support import write_config

MODELS = '''
import torch

class Plain(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = torch.nn.Linear(4, 3)

    def forward(self, x):
        return self.fc(x)

class CastsInside(Plain):
    def forward(self, x):
        return self.fc(x).float()  # pins float32 whatever the model's dtype

def plain():
    torch.manual_seed(0)
    return Plain()

def casts():
    torch.manual_seed(0)
    return CastsInside()
'''
SPECS = [TensorSpec("x", (2, 4), "float32", -1.0, 1.0)]


def source(tmp_path, factory):
    (tmp_path / "models.py").write_text(MODELS)
    return load_config(write_config(tmp_path / f"{factory}.yaml", f"models.py:{factory}", [{"name": "x", "shape": [2, 4]}]))


def test_the_oracle_runs_a_float64_copy_and_leaves_the_model_alone(tmp_path):
    x = np.random.default_rng(0).uniform(-1, 1, (2, 4)).astype(np.float32)
    with TorchFloat64Runner(source(tmp_path, "plain"), SPECS, ["y"]) as oracle:
        truth = oracle.infer({"x": x})["y"]
    with TorchRunner(source(tmp_path, "plain"), SPECS, ["y"]) as fp32:
        approx = fp32.infer({"x": x})["y"]
    assert truth.dtype == np.float64 and approx.dtype == np.float32
    assert np.max(np.abs(truth - approx)) < 1e-6


def test_a_model_that_casts_to_float32_inside_cannot_be_the_oracle(tmp_path):
    x = np.zeros((2, 4), np.float32)
    with TorchFloat64Runner(source(tmp_path, "casts"), SPECS, ["y"]) as oracle:
        with pytest.raises(RunnerError, match=r"output 'y' came out as float32, not float64: the model casts internally"):
            oracle.infer({"x": x})


def test_a_runner_runs_on_half_the_cores_and_gives_the_process_its_threads_back(tmp_path, monkeypatch):
    import torch

    from pipeline.runners import torch_runner

    monkeypatch.setattr(torch_runner, "RUN_THREADS", 1)
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        seen = []
        with TorchRunner(source(tmp_path, "plain"), SPECS, ["y"]) as runner:
            seen.append(torch.get_num_threads())
            runner.infer({"x": np.zeros((2, 4), np.float32)})
        assert seen == [1] and torch.get_num_threads() == 2
        broken = TorchRunner(source(tmp_path, "missing"), SPECS, ["y"])
        with pytest.raises(RunnerError):
            broken.activate()
        assert torch.get_num_threads() == 2, "a runner that could not load gives the threads back too"
    finally:
        torch.set_num_threads(before)


def test_the_model_is_built_at_the_processs_own_thread_count_not_the_runners(tmp_path, monkeypatch):
    # A factory that calibrates BatchNorm sums in another order on another count: built under the runner's
    # count, a stage run alone would audit a model a rounding away from the one the export built.
    import torch

    from pipeline.model import torch_model
    from pipeline.runners import torch_runner

    monkeypatch.setattr(torch_runner, "RUN_THREADS", 1)
    record = tmp_path / "built_at.txt"
    (tmp_path / "counting.py").write_text(MODELS + f'''
def counted():
    with open({str(record)!r}, "a") as f:
        f.write(str(torch.get_num_threads()))
    return plain()
''')
    config = load_config(write_config(tmp_path / "counted.yaml", "counting.py:counted", [{"name": "x", "shape": [2, 4]}]))
    torch_model._BUILT.clear()
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        with TorchFloat64Runner(config, SPECS, ["y"]) as oracle:
            during = torch.get_num_threads()
            oracle.infer({"x": np.zeros((2, 4), np.float32)})
        assert record.read_text() == "2" and during == 1
    finally:
        torch.set_num_threads(before)
        torch_model._BUILT.clear()
