"""The runner interface every backend implements.

A runner takes feeds and returns outputs in the logical (ONNX/PyTorch) layout:
each runner owns its own layout adapter, so comparison code never transposes.
Subclasses override only the `_*_impl` methods; the base class checks feeds and
activation state and times inference once, for all backends.
"""
from __future__ import annotations

import abc
import time

import numpy as np

from pipeline.errors import RunnerError, first_line
from pipeline.inputs import Feed, TensorSpec


class Runner(abc.ABC):
    """Backend runner: activate(), infer(feed) -> outputs, deactivate(); also a context manager."""

    name: str = "runner"
    precision: str = "fp32"
    # Intermediate-tensor runners may not produce every tensor for every model (a shared
    # module has no single output); they return what they have instead of failing.
    partial_outputs: bool = False

    def __init__(self, input_specs: list[TensorSpec], output_names: list[str]) -> None:
        self.input_specs = input_specs
        self.output_names = output_names
        self.is_active = False
        self.inference_seconds: list[float] = []

    def activate(self) -> None:
        try:
            self._activate_impl()
        except RunnerError:
            raise
        except Exception as exc:  # backends raise many types; name the backend and the cause
            raise RunnerError(f"{self.name}: could not load the model ({type(exc).__name__}: {first_line(exc)})") from None
        self.is_active = True

    def infer(self, feed: Feed) -> Feed:
        if not self.is_active:
            raise RunnerError(f"{self.name}: infer() called before activate()")
        self._check_feed(feed)
        start = time.perf_counter()
        try:
            outputs = self._infer_impl(feed)
        except RunnerError:
            raise
        except Exception as exc:  # as above: one line naming backend and cause
            raise RunnerError(f"{self.name}: inference failed ({type(exc).__name__}: {first_line(exc)})") from None
        self.inference_seconds.append(time.perf_counter() - start)
        missing = [name for name in self.output_names if name not in outputs]
        if self.partial_outputs:
            return {name: outputs[name] for name in self.output_names if name in outputs}
        if missing:
            raise RunnerError(f"{self.name}: the model returned no output named {missing}; it returned {sorted(outputs)}")
        return {name: outputs[name] for name in self.output_names}

    def deactivate(self) -> None:
        self._deactivate_impl()
        self.is_active = False

    def __enter__(self) -> "Runner":
        self.activate()
        return self

    def __exit__(self, *exc_info) -> None:
        self.deactivate()

    def _check_feed(self, feed: Feed) -> None:
        for spec in self.input_specs:
            array = feed.get(spec.name)
            if array is None:
                raise RunnerError(f"{self.name}: missing input '{spec.name}'; got {sorted(feed)}")
            if not _shape_fits(tuple(array.shape), spec):
                raise RunnerError(f"{self.name}: input '{spec.name}' has shape {list(array.shape)}, expected {_expected(spec)}")

    @abc.abstractmethod
    def _activate_impl(self) -> None: ...

    @abc.abstractmethod
    def _infer_impl(self, feed: Feed) -> dict[str, np.ndarray]: ...

    def _deactivate_impl(self) -> None:
        """Release the backend's resources; most runners only drop references."""


def _shape_fits(shape: tuple, spec) -> bool:
    """The example shape, except on the input's dynamic axes, which take any size."""
    return len(shape) == len(spec.shape) and all(a in spec.dynamic or n == d for a, (n, d) in enumerate(zip(shape, spec.shape)))


def _expected(spec) -> list:
    return [spec.dynamic[a] if a in spec.dynamic else d for a, d in enumerate(spec.shape)]
