"""Build the user's PyTorch model from a config: factory, checkpoint, eval mode."""
from __future__ import annotations

import difflib
import importlib
import importlib.util
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from pipeline.config import Source
from pipeline.errors import ConfigError, first_line

if TYPE_CHECKING:  # torch is imported where it is used: a full run starts the conversion child first
    import torch


_BUILT: dict[tuple, torch.nn.Module] = {}


def build_model(source: Source) -> torch.nn.Module:
    """Call the config's factory, load its checkpoint safely and switch to eval().

    Stages of one process share the model: building a large one (factory, BatchNorm
    calibration, checkpoint) once instead of once per stage. Callers must not change it."""
    key = (str(source.path), source.config.model_dump_json(), _mtime(source))
    if key not in _BUILT:
        _BUILT.clear()  # one model at a time: a process converting several models keeps only the current
        _BUILT[key] = _build(source)
    return _BUILT[key]


def _mtime(source: Source) -> float:
    target, _, _ = source.config.model.rpartition(":")
    path = source.resolve(target) if target.endswith(".py") else None
    return path.stat().st_mtime if path and path.exists() else 0.0


def _build(source: Source) -> torch.nn.Module:
    import torch  # here, not at the CLI's start: a full run starts its conversion child first

    config = source.config
    factory = _resolve_factory(config.model, source)
    try:
        model = factory(**config.model_args)
    except Exception as exc:  # the user's code: any failure is a config problem
        raise ConfigError(f"{source.path}: model factory '{config.model}' raised {type(exc).__name__}: {exc}") from None
    if not isinstance(model, torch.nn.Module):
        raise ConfigError(
            f"{source.path}: model factory '{config.model}' returned {type(model).__name__}, "
            "not a torch.nn.Module; make it return the model instance"
        )
    if config.checkpoint:
        load_checkpoint(model, source.resolve(config.checkpoint), source.path, config.unsafe_checkpoint)
    return model.eval()


def reference_model(source: Source, export) -> torch.nn.Module | None:
    """The PyTorch model when it is the audit's reference (not on the ONNX route); `export` is the ExportRecord."""
    if export.reference != "pytorch" or source.config is None:
        return None
    return build_model(source)


def _resolve_factory(spec: str, source: Source):
    config_path = source.path
    target, sep, attr = spec.rpartition(":")
    if not sep or not target or not attr:
        raise ConfigError(f"{config_path}: key 'model': '{spec}' must look like 'pkg.module:callable' or 'file.py:callable'")
    module = _import_file(target, source) if target.endswith(".py") else _import_module(target, config_path)
    factory = getattr(module, attr, None)
    if factory is None or not callable(factory):
        public = sorted(n for n in dir(module) if not n.startswith("_") and callable(getattr(module, n)))
        raise ConfigError(f"{config_path}: key 'model': '{target}' has no callable '{attr}'; {_callable_hint(attr, public)}")
    return factory


def _callable_hint(attr: str, public: list[str], shown: int = 10) -> str:
    """A did-you-mean when a name is close, then the callables there are (cut at `shown`, with how many more)."""
    close = difflib.get_close_matches(attr, public, n=1, cutoff=0.6)
    listed = ", ".join(public[:shown]) + (f", … ({len(public) - shown} more)" if len(public) > shown else "")
    return (f"did you mean '{close[0]}'? " if close else "") + f"available: {listed or 'none'}"


def _import_module(name: str, config_path: Path):
    try:
        return importlib.import_module(name)
    except ImportError as exc:
        raise ConfigError(f"{config_path}: key 'model': cannot import '{name}' ({exc}); check the module path") from None


def _import_file(relative: str, source: Source):
    config_path, path = source.path, source.resolve(relative)
    if not path.is_file():
        raise ConfigError(f"{config_path}: key 'model': file {path} not found (paths are relative to the config file)")
    module_name = f"_pipeline_model_{path.stem}_{abs(hash(path)) % 10**8}"
    spec = importlib.util.spec_from_file_location(module_name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module
    sys.path.insert(0, str(path.parent))  # let the file import its neighbours
    try:
        spec.loader.exec_module(module)
    except Exception as exc:
        raise ConfigError(f"{path}: importing the model file raised {type(exc).__name__}: {exc}") from None
    finally:
        sys.path.remove(str(path.parent))
    return module


def load_checkpoint(model: torch.nn.Module, path: Path, config_path: Path, unsafe: bool = False) -> None:
    """Load a state_dict from .safetensors or a .pt file with weights_only=True (unless opted out)."""
    if not path.is_file():
        raise ConfigError(f"{config_path}: key 'checkpoint': file {path} not found")
    state = _read_state_dict(path, unsafe)
    missing, unexpected = _key_mismatch(model, state)
    if missing or unexpected:
        raise ConfigError(
            f"{path}: checkpoint keys do not match the model: missing {missing[:3]}, unexpected {unexpected[:3]}; "
            "check that the checkpoint belongs to this model"
        )
    model.load_state_dict(state)


def _read_state_dict(path: Path, unsafe: bool = False) -> dict:
    if path.suffix == ".safetensors":
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        try:
            return load_file(str(path))
        except SafetensorError as exc:
            raise ConfigError(f"{path}: not a readable .safetensors file ({exc}); check that the file is complete") from None
    import torch

    try:
        state = torch.load(path, map_location="cpu", weights_only=not unsafe)
    except Exception as exc:  # torch raises UnpicklingError, RuntimeError and others for the same refusal
        raise ConfigError(
            f"{path}: torch.load(weights_only=True) refused the checkpoint ({first_line(exc, 120)}): it holds Python "
            "objects, not only tensors; save a plain state_dict (torch.save(model.state_dict(), ...)) or .safetensors, "
            "or, only if you trust its source, set 'unsafe_checkpoint: true' in the config (unpickling can run arbitrary code)"
        ) from None
    if not isinstance(state, dict):
        raise ConfigError(f"{path}: checkpoint holds {type(state).__name__}, not a state_dict; save model.state_dict()")
    return state


def _key_mismatch(model: torch.nn.Module, state: dict) -> tuple[list[str], list[str]]:
    expected = set(model.state_dict())
    return sorted(expected - set(state)), sorted(set(state) - expected)
