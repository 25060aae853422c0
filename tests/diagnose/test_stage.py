"""pipeline/diagnose/stage.py end to end: the issue's "Done when" list, on ports built here."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from pipeline.artifacts.folder import ArtifactDir
from pipeline.audit.noise import NOISE_RATIO_BOUND
from pipeline.config import load_config
from pipeline.diagnose.load import load_port
from pipeline.diagnose.stage import DiagnoseRequest, diagnose
from pipeline.model.torch_model import build_model
from tests.diagnose import ports
from tests.support import run_cli

FINDING_KEYS = {"rule", "severity", "keras_layer", "module", "attribute", "expected", "actual", "error_before",
                "error_after", "explained", "message"}


def _case(tmp: Path, factory: str, shape: list[int], make_port, name: str):
    config = ports.write_config(tmp, factory, shape, name)
    model = build_model(load_config(config))
    port = tmp / f"{name}.keras"
    make_port(model).save(port)
    return config, port


def _diagnose(config: Path, port: Path, tmp: Path, fix: bool = True):
    request = DiagnoseRequest(load_config(config), port, ArtifactDir.for_model("x", str(tmp / "out")),
                              fix=tmp / f"{port.stem}_fixed.keras" if fix else None)
    return diagnose(request)


def _cli(capsys, *argv: str) -> tuple[int, dict | None, str]:
    code = run_cli("diagnose", *argv, "--json")
    out, err = capsys.readouterr()
    return code, (json.loads(out) if out.strip() else None), err


# --- the report's block: Focus stem, Conv(12->32, no bias), BN(eps 1e-5), LeakyReLU(0.1) ---------

@pytest.fixture(scope="module")
def focus(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("focus")
    config, port = _case(tmp, "focus_block", [1, 3, 64, 64], ports.focus_port, "focus")
    return config, port, _diagnose(config, port, tmp), tmp


def test_keras_default_epsilon_is_named_and_explains_the_error(focus):
    _, _, record, _ = focus
    errors = record.errors
    assert [(f.rule, f.keras_layer, f.module, f.attribute) for f in errors] == [("bn_epsilon", "bn", "bn", "epsilon")]
    finding = errors[0]
    assert finding.actual == pytest.approx(1e-3) and finding.expected == pytest.approx(1e-5)
    assert finding.explained >= 0.9
    assert finding.error_after < finding.error_before
    assert record.verdict == "not_faithful"
    assert record.first_divergent == "bn"


def test_fix_brings_the_report_block_within_the_noise_floor(focus):
    _, _, record, tmp = focus
    after = record.fixed["after"]
    assert record.fixed["verdict"] == "faithful"
    assert after["ratio"] <= NOISE_RATIO_BOUND
    assert after["max_abs"] < record.before.max_abs / 1000
    fixed = load_port(Path(record.fixed["path"]))  # loads safely: built-in layers only
    assert fixed.get_layer("bn").epsilon == pytest.approx(1e-5)


def test_diagnose_json_has_the_documented_keys(focus):
    _, _, record, _ = focus
    payload = record.to_json()
    assert {"findings", "max_abs_before", "max_abs_after_fix", "verdict", "layers"} <= set(payload)
    assert all(FINDING_KEYS <= set(f) for f in payload["findings"])
    assert [row["keras_layer"] for row in payload["layers"]] == ["conv", "bn", "act"]
    assert payload["max_abs_after_fix"] < payload["max_abs_before"]


def test_cli_exit_1_writes_the_three_files(focus, capsys, tmp_path):
    config, port, _, _ = focus
    code, payload, _ = _cli(capsys, str(config), "--keras", str(port), "--out", str(tmp_path))
    assert code == 1
    assert payload["verdict"] == "not_faithful"
    assert {p.name for p in tmp_path.iterdir()} >= {"diagnose.json", "diagnose.md", "diagnose.html"}
    assert json.loads((tmp_path / "diagnose.json").read_text())["findings"][0]["keras_layer"] == "bn"


def test_faithful_port_exits_0_without_error_findings(tmp_path, capsys):
    config, port = _case(tmp_path, "focus_block", [1, 3, 64, 64], lambda m: ports.focus_port(m, epsilon=1e-5), "focus")
    code, payload, _ = _cli(capsys, str(config), "--keras", str(port), "--out", str(tmp_path / "out"))
    assert code == 0
    assert payload["verdict"] == "faithful"
    assert payload["counts"]["error"] == 0
    assert payload["noise_ratio_before"] <= NOISE_RATIO_BOUND


# --- stride 2 with padding='same' --------------------------------------------------------------

@pytest.fixture(scope="module")
def stride2(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("stride2")
    config, port = _case(tmp, "stride2", [1, 3, 32, 32], ports.stride2_port, "stride2")
    return _diagnose(config, port, tmp)


def test_stride2_same_padding_names_the_conv_and_the_rows(stride2):
    padding = [f for f in stride2.errors if f.rule == "padding"]
    assert [f.keras_layer for f in padding] == ["conv0", "conv3"]
    first = padding[0]
    assert first.module == "0"
    assert first.detail["pytorch_pads"] == [1, 1, 1, 1]
    assert first.detail["port_pads"] == [0, 0, 1, 1]  # TF 'same' at stride 2 on 32x32: nothing on top/left
    assert first.detail["differs_at"][0].startswith("top")
    assert "ZeroPadding2D(((1, 1), (1, 1)))" in first.message
    # Each shift alone leaves the other one in place; corrected together they explain the error.
    assert all(f.explained is not None for f in padding)
    assert all(f.detail["share_if_only_this_remains"] > 0.5 for f in padding)  # each conv alone is a culprit
    assert stride2.all_corrections["explained"] >= 0.9


def test_stride2_fix_inserts_zero_padding_and_reaches_the_floor(stride2):
    assert stride2.fixed["verdict"] == "faithful"
    fixed = load_port(Path(stride2.fixed["path"]))
    pad = fixed.get_layer("conv0_pad")
    assert type(pad).__name__ == "ZeroPadding2D" and tuple(map(tuple, pad.padding)) == ((1, 1), (1, 1))
    assert fixed.get_layer("conv0").padding == "valid"


# --- a deep port: every BatchNormalization at Keras' default epsilon --------------------------

@pytest.mark.slow
def test_deep_port_error_grows_with_depth_and_the_fix_reaches_the_floor(tmp_path):
    config, port = _case(tmp_path, "deep", [1, 3, 16, 16], ports.deep_port, "deep")
    record = _diagnose(config, port, tmp_path)
    assert sum(f.rule == "bn_epsilon" for f in record.errors) == 32
    bn_rows = [row for row in record.layers if row.kind == "bn"]
    assert len(bn_rows) == 32
    assert bn_rows[-1].error > 10 * bn_rows[0].error
    assert bn_rows[0].within_floor is False
    assert record.all_corrections["within_floor"] is True
    assert record.fixed["verdict"] == "faithful"
    assert record.fixed["after"]["ratio"] <= NOISE_RATIO_BOUND


def test_inputs_file_replaces_the_seeded_samples(focus, capsys, tmp_path):
    import numpy as np

    config, port, _, _ = focus
    real = tmp_path / "real.npz"
    np.savez(real, x=np.random.default_rng(3).uniform(-1, 1, (1, 3, 64, 64)).astype("float32"))
    code, payload, _ = _cli(capsys, str(config), "--keras", str(port), "--inputs", str(real), "--out", str(tmp_path / "o"))
    assert code == 1
    assert payload["samples"] == 1 + 3  # the file's sample and the three edge cases


def test_valid_padding_where_pytorch_pads_changes_the_shape(tmp_path, capsys):
    config, port = _case(tmp_path, "stride2", [1, 3, 32, 32], lambda m: ports.stride2_port(m, padding="valid"), "valid")
    fixed = tmp_path / "fixed.keras"
    code, payload, _ = _cli(capsys, str(config), "--keras", str(port), "--fix", str(fixed), "--out", str(tmp_path / "o"))
    assert code == 1
    assert payload["max_abs_before"] is None  # the output has another shape: no finite error
    assert {f["keras_layer"] for f in payload["findings"] if f["rule"] == "padding"} == {"conv0", "conv3"}
    assert payload["fixed"]["verdict"] == "faithful"


def test_sequential_built_without_input_is_compared_layer_by_layer(tmp_path):
    config, port = _case(tmp_path, "stride2", [1, 3, 32, 32], lambda m: ports.stride2_port(m, with_input=False), "noinput")
    record = _diagnose(config, port, tmp_path, fix=False)
    assert [row.keras_layer for row in record.layers][:3] == ["conv0", "bn0", "relu0"]
    assert record.first_divergent == "conv0"
    assert {f.keras_layer for f in record.errors if f.rule == "padding"} == {"conv0", "conv3"}


@pytest.mark.slow
def test_repo_deep_convbn_config_with_keras_default_epsilon(tmp_path):
    from pipeline.config import resolve_source

    source = resolve_source("deep_convbn")
    port = tmp_path / "deep_convbn.keras"
    ports.deep_convbn_port(build_model(source)).save(port)
    request = DiagnoseRequest(source, port, ArtifactDir.for_model(source.name, str(tmp_path / "out")),
                              fix=tmp_path / "fixed.keras")
    record = diagnose(request)
    bn_rows = [row for row in record.layers if row.kind == "bn"]
    assert len(bn_rows) == 32 and bn_rows[-1].error > 10 * bn_rows[0].error
    assert {f.rule for f in record.errors} == {"bn_epsilon"}
    assert record.fixed["verdict"] == "faithful"


def test_port_missing_an_activation_names_the_module(focus, capsys, tmp_path):
    import keras

    config, port, _, _ = focus
    good = keras.saving.load_model(port, compile=False)
    short = tmp_path / "no_act.keras"
    keras.Model(good.input, good.get_layer("bn").output).save(short)
    code, payload, _ = _cli(capsys, str(config), "--keras", str(short), "--out", str(tmp_path / "o"))
    assert code == 1
    missing = [f for f in payload["findings"] if f["rule"] == "missing_layer"]
    assert [(f["module"], f["expected"], f["keras_layer"]) for f in missing] == [("act", "LeakyReLU", None)]
