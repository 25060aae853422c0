"""No pass without evidence: degenerate outputs are inconclusive (exit 4), with the reason."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from pipeline.compare import evidence_problem, tolerance_for
from pipeline.config import CONFIGS_DIR, load_config
from pipeline.inputs import TensorSpec, feeds, generate, with_edge_cases
from pipeline.model.torch_model import build_model
from tests.support import run_cli

MODELS = '''
import torch

class TinyStack(torch.nn.Module):
    """Conv stack with weights scaled by 1e-3: activations shrink ~1e-3 per layer."""
    def __init__(self):
        super().__init__()
        self.body = torch.nn.Sequential(*[torch.nn.Conv2d(3 if i == 0 else 8, 8, 3, padding=1) for i in range(8)])
        with torch.no_grad():
            for conv in self.body:
                conv.weight.mul_(1e-3)
                conv.bias.zero_()

    def forward(self, x):
        return self.body(x)

class Constant(torch.nn.Module):
    """Ignores its input entirely: onnx2tf folds the output away."""
    def __init__(self):
        super().__init__()
        self.lin = torch.nn.Linear(4, 3)

    def forward(self, x):
        return self.lin(torch.ones_like(x))

class Zeroed(torch.nn.Module):
    """Multiplies its input by zero, so the graph still reads it."""
    def __init__(self):
        super().__init__()
        self.lin = torch.nn.Linear(4, 3)

    def forward(self, x):
        return self.lin(x * 0.0)

def tiny():
    torch.manual_seed(0)
    return TinyStack()

def constant():
    torch.manual_seed(0)
    return Constant()

def zeroed():
    torch.manual_seed(0)
    return Zeroed()
'''


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("evidence")
    (root / "models.py").write_text(MODELS)
    for name, shape in (("tiny", [1, 3, 16, 16]), ("constant", [1, 4]), ("zeroed", [1, 4])):
        (root / f"{name}.yaml").write_text(f"model: models.py:{name}\ninputs:\n  - name: x\n    shape: {shape}\n")
    return root


@pytest.mark.slow
def test_vanishing_conv_stack_is_inconclusive_and_names_where_the_signal_died(folder, no_network):
    assert run_cli("convert", str(folder / "tiny.yaml"), "--out", str(folder / "out_tiny")) == 4
    report = json.loads((folder / "out_tiny" / "report.json").read_text())
    assert report["verdict"] == "inconclusive"
    assert all(c["verdict"] == "inconclusive" for c in report["comparisons"])
    assert any("an all-zero output would pass" in r for r in report["verdict_reasons"])
    signal = report["signal"]
    assert signal["kind"] == "vanish" and signal["op_type"] == "Conv" and signal["module"].startswith("body.")
    assert signal["message"].startswith(f"activations fall below 1e-12 after node {signal['node']}")
    assert "calibrate BatchNorm statistics or load trained weights" in signal["message"]


@pytest.mark.slow
@pytest.mark.parametrize("name", ["constant", "zeroed"])
def test_model_that_ignores_its_input_is_inconclusive(folder, name, no_network, capsys):
    code = run_cli("convert", str(folder / f"{name}.yaml"), "--out", str(folder / f"out_{name}"))
    assert code == 4
    validate = json.loads((folder / f"out_{name}" / "validate.json").read_text())
    assert "the same for all 7 input samples" in validate["evidence"]["output"]
    report_path = folder / f"out_{name}" / "report.json"
    if report_path.exists():  # the zeroed model converts, so the audit runs and says why
        assert json.loads(report_path.read_text())["verdict"] == "inconclusive"
    else:  # onnx2tf folds the constant model away: one line says why
        assert capsys.readouterr().err.strip().startswith("inconclusive: 'output': the output is the same for all")


# The wide zoo's 54 models get the same check in tests/zoo/test_zoo_wide.py (most of them marked slow there).
SHIPPED = sorted(p for p in CONFIGS_DIR.rglob("*.yaml") if "zoo_wide" not in p.relative_to(CONFIGS_DIR).parts)


@pytest.mark.parametrize("config", SHIPPED, ids=lambda p: p.relative_to(CONFIGS_DIR).with_suffix("").as_posix())
def test_every_shipped_config_carries_signal(config):
    """A shipped model whose outputs vanish or ignore the input would make every audit inconclusive."""
    source = load_config(config)
    specs = [TensorSpec.from_config(s) for s in source.config.inputs]
    samples = feeds(with_edge_cases(generate(specs, source.config.samples, source.config.seed), specs))
    model = build_model(source)
    with torch.no_grad():
        outputs = np.stack([model(*[torch.from_numpy(f[s.name]) for s in specs]).numpy() for f in samples])
    assert evidence_problem(outputs, tolerance_for("tflite_fp16")) is None
    assert np.abs(outputs).max() > 1e-2
