"""pipeline/model/torch_model.py: building the user's model from a config (factory, checkpoint, eval)."""
from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch
from safetensors import SafetensorError
from safetensors.torch import save_file

from tests.support import write_config
from pipeline.config import Source, load_config
from pipeline.errors import ConfigError
from pipeline.model.torch_model import build_model

MODEL_FILE = """\
import torch
from torch import nn


class Tiny(nn.Module):
    def __init__(self, features):
        super().__init__()
        self.linear = nn.Linear(features, 2)

    def forward(self, x):
        return self.linear(x)


def build(features=3):
    return Tiny(features)


def broken():
    raise ValueError("channels must be even")


def not_a_module():
    return {"linear": None}


NOT_CALLABLE = 42
"""


def make_source(tmp_path: Path, model: str, checkpoint: str | None = None, model_args: str = "{}") -> Source:
    """Write models/tiny.py and a config next to it; return the loaded Source."""
    (tmp_path / "models").mkdir(exist_ok=True)
    (tmp_path / "models" / "tiny.py").write_text(MODEL_FILE)
    import yaml

    config = write_config(tmp_path / "tiny.yaml", yaml.safe_load(model), [{"name": "x", "shape": [1, 3]}],
                          model_args=yaml.safe_load(model_args), checkpoint=checkpoint)
    return load_config(config)


def tiny_state(value: float, features: int = 3) -> dict[str, torch.Tensor]:
    return {"linear.weight": torch.full((2, features), value), "linear.bias": torch.full((2,), value)}


class Opaque:
    """A custom class: pickled whole, which torch.load(weights_only=True) refuses to unpickle."""

    def __init__(self) -> None:
        self.weights = torch.ones(2)


# --- the factory ------------------------------------------------------------

def test_factory_from_a_file_relative_to_the_config(tmp_path, monkeypatch):
    source = make_source(tmp_path, "models/tiny.py:build", model_args="{features: 5}")
    monkeypatch.chdir(tmp_path / "models")  # the path resolves against the config, not the cwd
    model = build_model(source)
    assert type(model).__name__ == "Tiny"
    assert model.linear.in_features == 5
    assert not model.training


def test_factory_from_an_importable_module(tmp_path):
    model = build_model(make_source(tmp_path, "pipeline.zoo.seed:build"))
    assert type(model).__name__ == "SeedYM" and not model.training


def test_factory_that_raises(tmp_path):
    source = make_source(tmp_path, "models/tiny.py:broken")
    with pytest.raises(ConfigError, match=r"model factory 'models/tiny\.py:broken' raised ValueError: channels must be even"):
        build_model(source)


def test_factory_that_rejects_model_args(tmp_path):
    source = make_source(tmp_path, "models/tiny.py:build", model_args="{width: 4}")
    with pytest.raises(ConfigError, match=r"raised TypeError: .*unexpected keyword argument 'width'"):
        build_model(source)


def test_factory_returning_something_else_than_a_module(tmp_path):
    source = make_source(tmp_path, "models/tiny.py:not_a_module")
    with pytest.raises(ConfigError, match=r"returned dict, not a torch\.nn\.Module; make it return the model instance"):
        build_model(source)


def test_missing_module(tmp_path):
    source = make_source(tmp_path, "no_such_package_xyz.models:build")
    with pytest.raises(ConfigError, match=r"key 'model': cannot import 'no_such_package_xyz\.models' \(No module named"):
        build_model(source)


def test_missing_model_file(tmp_path):
    source = make_source(tmp_path, "models/absent.py:build")
    expected = f"key 'model': file {(tmp_path / 'models' / 'absent.py').resolve()} not found (paths are relative to the config file)"
    with pytest.raises(ConfigError, match=re.escape(expected)):
        build_model(source)


def test_model_file_that_fails_to_import(tmp_path):
    source = make_source(tmp_path, "models/tiny.py:build")
    (tmp_path / "models" / "tiny.py").write_text("raise RuntimeError('missing dependency')\n")
    with pytest.raises(ConfigError, match=r"tiny\.py: importing the model file raised RuntimeError: missing dependency"):
        build_model(source)


def test_a_misspelt_factory_gets_a_did_you_mean(tmp_path):
    source = make_source(tmp_path, "models/tiny.py:biuld")
    with pytest.raises(ConfigError, match=r"has no callable 'biuld'; did you mean 'build'\? available: .*\bbuild\b"):
        build_model(source)


def test_a_long_list_of_callables_is_cut_and_says_how_many_more():
    from pipeline.model.torch_model import _callable_hint

    hint = _callable_hint("zzz", [f"f{i:02d}" for i in range(14)])
    assert hint == "available: f00, f01, f02, f03, f04, f05, f06, f07, f08, f09, … (4 more)"


@pytest.mark.parametrize("attr", ["nope", "NOT_CALLABLE"])
def test_missing_or_non_callable_attribute_lists_what_is_there(tmp_path, attr):
    source = make_source(tmp_path, f"models/tiny.py:{attr}")
    with pytest.raises(ConfigError, match=rf"'models/tiny\.py' has no callable '{attr}'; available: .*\bbuild\b"):
        build_model(source)


@pytest.mark.parametrize("spec", ["models/tiny.py", "models/tiny.py:", ":build"])
def test_malformed_model_spec(tmp_path, spec):
    source = make_source(tmp_path, f"'{spec}'")
    with pytest.raises(ConfigError, match=r"must look like 'pkg\.module:callable' or 'file\.py:callable'"):
        build_model(source)


# --- checkpoints ------------------------------------------------------------

def test_state_dict_checkpoint_loads(tmp_path):
    torch.save(tiny_state(0.5), tmp_path / "weights.pt")
    model = build_model(make_source(tmp_path, "models/tiny.py:build", checkpoint="weights.pt"))
    assert torch.equal(model.linear.weight, torch.full((2, 3), 0.5))
    assert torch.equal(model.linear.bias, torch.full((2,), 0.5))


def test_safetensors_checkpoint_loads(tmp_path):
    save_file(tiny_state(-1.5), str(tmp_path / "weights.safetensors"))
    model = build_model(make_source(tmp_path, "models/tiny.py:build", checkpoint="weights.safetensors"))
    assert torch.equal(model.linear.weight, torch.full((2, 3), -1.5))


def test_checkpoint_with_mismatched_keys_lists_them(tmp_path):
    state = tiny_state(0.5)
    state["linear.extra"] = state.pop("linear.bias")
    torch.save(state, tmp_path / "weights.pt")
    source = make_source(tmp_path, "models/tiny.py:build", checkpoint="weights.pt")
    with pytest.raises(ConfigError, match=re.escape(
            "checkpoint keys do not match the model: missing ['linear.bias'], unexpected ['linear.extra']")):
        build_model(source)


def test_pickled_custom_object_is_refused_by_weights_only(tmp_path):
    torch.save(Opaque(), tmp_path / "weights.pt")
    assert isinstance(torch.load(tmp_path / "weights.pt", weights_only=False), Opaque)  # readable, but only unsafely
    source = make_source(tmp_path, "models/tiny.py:build", checkpoint="weights.pt")
    with pytest.raises(ConfigError, match=r"weights\.pt: torch\.load\(weights_only=True\) refused the checkpoint .*\.safetensors"):
        build_model(source)


def test_checkpoint_that_is_not_a_dict(tmp_path):
    torch.save(torch.zeros(3), tmp_path / "weights.pt")
    source = make_source(tmp_path, "models/tiny.py:build", checkpoint="weights.pt")
    with pytest.raises(ConfigError, match=r"checkpoint holds Tensor, not a state_dict"):
        build_model(source)


def test_missing_checkpoint_file(tmp_path):
    source = make_source(tmp_path, "models/tiny.py:build", checkpoint="absent.pt")
    with pytest.raises(ConfigError, match=r"key 'checkpoint': file .*absent\.pt not found"):
        build_model(source)


def test_corrupt_safetensors_is_a_config_error(tmp_path):
    (tmp_path / "weights.safetensors").write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{not json}")
    source = make_source(tmp_path, "models/tiny.py:build", checkpoint="weights.safetensors")
    with pytest.raises(ConfigError, match=r"weights\.safetensors"):
        build_model(source)
