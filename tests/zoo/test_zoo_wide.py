"""The wide zoo (configs/zoo_wide/, pipeline/zoo/wide.py): the configs are the registry's, and
each model builds offline, returns plain float32 tensors, and its outputs depend on its inputs.

PyTorch only: the batch (`make zoo-wide`) converts them. A handful run in the fast suite (one
per input kind); the sweep over every architecture is marked slow, as are the two conversions.
"""
from __future__ import annotations

import numpy as np
import pytest
import torch

from pipeline.config import CONFIGS_DIR, load_config
from pipeline.compare import evidence_problem, tolerance_for
from pipeline.inputs import TensorSpec, feeds, generate, with_edge_cases
from pipeline.model.torch_model import build_model
from pipeline.zoo import wide
from tests.support import Run, run_cli

WIDE = CONFIGS_DIR / "zoo_wide"
CONFIGS = sorted(WIDE.glob("*.yaml"))
FAST = ("resnet18", "vit", "bert", "gpt2", "wav2vec2")  # images, token ids with a mask, ids alone, waveforms
# Far above float32 rounding of the outputs' scale (2**-24 relative): an output that moves by less
# than 1e-4 of its scale between two random inputs carries no signal a conversion error could hit.
MIN_SPREAD = 1e-4


def test_every_committed_config_is_the_registrys():
    """configs/zoo_wide is generated: regenerate with `python -m pipeline.zoo.wide configs/zoo_wide`."""
    assert {path.stem for path in CONFIGS} == set(wide.ARCHS)
    for path in CONFIGS:
        assert path.read_text() == wide.config_yaml(wide.ARCHS[path.stem]), f"{path.name} is stale; regenerate it"


def test_the_wide_zoo_covers_every_family_with_40_architectures():
    families = [entry.family for entry in wide.ARCHS.values()]
    assert len(families) >= 40
    assert set(families) == set(wide.FAMILIES)
    assert min(families.count(f) for f in wide.FAMILIES) >= 4


def test_an_unknown_architecture_is_named_with_the_known_ones():
    with pytest.raises(ValueError, match=r"unknown wide-zoo architecture 'resnet1'; known: .*resnet18"):
        wide.build("resnet1")


def test_decoders_return_logits_without_a_cache():
    for entry in wide.ARCHS.values():
        if entry.family == "decoder":
            assert entry.config().use_cache is False, entry.name
            assert entry.outputs == ("logits",), entry.name


@pytest.mark.parametrize("name", FAST)
def test_a_handful_build_and_depend_on_their_inputs(name, no_network):
    _check_outputs(WIDE / f"{name}.yaml")


@pytest.mark.slow
@pytest.mark.parametrize("path", [p for p in CONFIGS if p.stem not in FAST], ids=lambda p: p.stem)
def test_every_model_builds_and_depends_on_its_inputs(path, no_network):
    _check_outputs(path)


def _check_outputs(path) -> None:
    """The config's own samples and edge cases: finite float32 tensors, evidence the audit accepts
    (pipeline.compare.evidence_problem), and two random samples that differ far above rounding."""
    source = load_config(path)
    assert source.config.model == "pipeline.zoo.wide:build"
    specs = [TensorSpec.from_config(s) for s in source.config.inputs]
    model = build_model(source)
    assert not model.training
    samples = feeds(with_edge_cases(generate(specs, 2, source.config.seed), specs))
    with torch.no_grad():
        runs = [model(*[torch.from_numpy(sample[s.name]) for s in specs]) for sample in samples]
    runs = [run if isinstance(run, tuple) else (run,) for run in runs]
    assert len(runs[0]) == len(source.config.outputs or ["output"])
    for index in range(len(runs[0])):
        assert all(isinstance(run[index], torch.Tensor) and run[index].dtype == torch.float32 for run in runs)
        stacked = np.stack([run[index].numpy() for run in runs])
        assert np.isfinite(stacked).all()
        assert evidence_problem(stacked, tolerance_for("tflite_fp16")) is None
        first, second = stacked[0].astype(np.float64), stacked[1].astype(np.float64)
        scale = max(np.abs(first).max(), np.abs(second).max())
        spread = np.abs(first - second).max()
        assert scale > 1e-2, f"outputs vanish: largest magnitude {scale:.3g}"
        assert spread > MIN_SPREAD * scale, f"outputs barely depend on the input: spread {spread:.3g}, scale {scale:.3g}"


def test_a_wide_model_is_seeded(no_network):
    """Two builds give identical weights and BatchNorm statistics (the calibration is seeded too)."""
    first, second = wide.build("levit").state_dict(), wide.build("levit").state_dict()
    assert first.keys() == second.keys()
    assert all(torch.equal(first[k], second[k]) for k in first)
    assert not torch.equal(wide.build("levit", seed=1).state_dict()[next(iter(first))], first[next(iter(first))])


FP32_BACKENDS = {"onnxruntime", "tf_saved_model", "keras", "tflite_fp32"}


@pytest.mark.slow
@pytest.mark.parametrize("name", ["mobilevit", "gpt2"])
def test_a_hybrid_and_a_decoder_convert_correctly_in_float32(name, tmp_path, no_network):
    """End to end: MobileViT (convs with calibrated BatchNorm around attention) and GPT-2 (token ids in,
    logits for every position out). Every float32 backend lands within the noise bound of the float64
    oracle. fp16 is judged by its own rules (the lower-precision work), not here."""
    run = Run(run_cli("convert", str(WIDE / f"{name}.yaml"), "--out", str(tmp_path / name)), tmp_path / name)
    report = run.report
    fp32 = [c for c in report["comparisons"] if c["candidate"] in FP32_BACKENDS]
    assert {c["candidate"] for c in fp32} == FP32_BACKENDS
    assert all(c["passed"] and c["noise_ratio"] <= report["oracle"]["bound"] for c in fp32), report["verdict_reasons"]
    assert all(c["ref_max_abs"] > 0.1 for c in fp32)  # the outputs carry signal
