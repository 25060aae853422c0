"""Layer-by-layer localization on real exports: a tampered ONNX file is caught at its node."""
from __future__ import annotations

import json
import shutil

import onnx
import pytest

from tests.support import REPO, run_cli

pytestmark = pytest.mark.slow

MODEL_FILE = '''
import torch
from pipeline.zoo.calibrate import calibrate_batchnorm

class Net(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = torch.nn.Conv2d(3, 8, 3, padding=1)
        self.act = torch.nn.ReLU()
        self.norm = torch.nn.BatchNorm2d(8)  # after a ReLU: stays a BatchNormalization node
        self.head = torch.nn.Conv2d(8, 4, 3, stride=2, padding=1)

    def forward(self, x):
        return self.head(self.norm(self.act(self.conv(x))))

def build():
    torch.manual_seed(0)
    return calibrate_batchnorm(Net(), torch.rand(8, 3, 16, 16) - 0.5)
'''


@pytest.fixture(scope="module")
def exported(tmp_path_factory, no_network):
    folder = tmp_path_factory.mktemp("bn_net")
    (folder / "net.py").write_text(MODEL_FILE)
    (folder / "bn_net.yaml").write_text("model: net.py:build\ninputs:\n  - name: x\n    shape: [1, 3, 16, 16]\n    low: -1\n    high: 1\n")
    assert run_cli("export", str(folder / "bn_net.yaml"), "--out", str(folder / "art")) == 0
    return folder


def tamper(exported, tmp_path, op_type: str, attribute: str, value):
    model = onnx.load(str(exported / "art" / "model.onnx"))
    node = next(n for n in model.graph.node if n.op_type == op_type and (op_type != "Conv" or
                any(a.name == "strides" and list(a.ints) == [2, 2] for a in n.attribute)))
    target = next(a for a in node.attribute if a.name == attribute)
    if isinstance(value, list):
        target.ints[:] = value
    else:
        target.f = value
    path = tmp_path / "tampered.onnx"
    onnx.save(model, str(path))
    return node.name, path


def audit(exported, path, out):
    code = run_cli("audit", str(exported / "bn_net.yaml"), "--onnx", str(path), "--out", str(out))
    return code, json.loads((out / "report.json").read_text())


def test_changed_batchnorm_epsilon_is_localized_to_its_node_and_module(exported, tmp_path):
    node, path = tamper(exported, tmp_path, "BatchNormalization", "epsilon", 1e-3)
    code, report = audit(exported, path, tmp_path / "out")
    assert code == 1 and report["verdict"] == "fail"
    first = next(l for l in report["localization"] if (l["reference"], l["candidate"]) == ("pytorch_fp64", "onnxruntime"))
    assert first["noise_ratio"] > report["oracle"]["bound"]
    assert (first["found"], first["node"], first["op_type"], first["module"], first["origin"]) == \
        (True, node, "BatchNormalization", "norm", "own")
    assert first["error_in"] <= 1e-5 < first["error_out"]
    assert abs(first["attributes"]["epsilon"] - 1e-3) < 1e-9
    assert any(f["rule"] == "bn_epsilon" and f["severity"] == "error" for f in first["lint_findings"])
    assert "## Where the backends part ways" in (tmp_path / "out" / "report.md").read_text()


def test_stride2_pads_in_tf_same_placement_are_localized(exported, tmp_path):
    node, path = tamper(exported, tmp_path, "Conv", "pads", [0, 0, 1, 1])
    code, report = audit(exported, path, tmp_path / "out")
    assert code == 1
    first = next(l for l in report["localization"] if l["candidate"] == "onnxruntime")
    assert (first["node"], first["module"], first["origin"]) == (node, "head", "own")
    assert first["attributes"]["pads"] == [0, 0, 1, 1]
    depth = next(p for p in report["layers"]["pairs"] if p["candidate"] == "onnxruntime")["tensors"]
    assert [t["exceeds"] for t in depth][-1] is True and depth[0]["exceeds"] is False


def test_a_clean_file_passes_and_layers_run_only_when_asked(exported, tmp_path):
    code, report = audit(exported, exported / "art" / "model.onnx", tmp_path / "out")
    assert code == 0 and report["layers"]["ran"] is False
    assert run_cli("audit", str(exported / "bn_net.yaml"), "--out", str(tmp_path / "out"), "--layers") == 0
    audit_record = json.loads((tmp_path / "out" / "audit.json").read_text())
    assert audit_record["layers"]["ran"] is True
    assert all(not l["found"] for l in audit_record["localization"])
    pairs = {(p["reference"], p["candidate"]): len(p["tensors"]) for p in audit_record["layers"]["pairs"]}
    assert pairs[("pytorch_fp64", "onnxruntime")] >= 3 and pairs[("pytorch_fp64", "keras")] >= 3
    assert pairs[("pytorch_fp64", "pytorch")] >= 3  # the noise band every tensor is judged against
