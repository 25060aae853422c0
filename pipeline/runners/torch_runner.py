"""PyTorch runners: the user's model in eval mode, under no_grad, in float32 and as a float64 oracle."""
from __future__ import annotations

import os

import numpy as np
import torch

from pipeline.config import Source
from pipeline.errors import RunnerError
from pipeline.inputs import Feed, TensorSpec
from pipeline.runners.base import Runner
from pipeline.model.float64 import float64_copy, perturb_array, perturbed, to_float64
from pipeline.model.torch_model import build_model


# The intra-op threads of a runner's PyTorch runs: half the cores, at least one. The audit runs samples one at a
# time, beside TensorFlow's and LiteRT's thread pools (and the TF worker's process), and on a shared machine
# PyTorch's default of every core lost most to contention: measured on 2 cores at load average about 3, a tiny
# FCN's forwards took 1.0-2.0 s with 2 threads against 0.05 s with 1 (81 forwards, one 3-shape audit), and a
# ResNet-50 at 224 px in float64 1.4 s a forward against 0.5 s.
_CORES = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)  # this process's
RUN_THREADS = max(1, _CORES // 2)


class TorchRunner(Runner):
    name = "pytorch"

    def __init__(self, source: Source, input_specs: list[TensorSpec], output_names: list[str]) -> None:
        super().__init__(input_specs, output_names)
        self.source = source
        self.model: torch.nn.Module | None = None
        self._threads_before = torch.get_num_threads()

    def activate(self) -> None:
        # RUN_THREADS for the whole run of samples (never more than the process had: a user's lower setting stays);
        # the process's own count comes back at deactivate. The model is built before, at the process's own count,
        # as the export built it: a factory that calibrates BatchNorm (the zoo's) sums in another order on another
        # count, and an audit run alone would judge a model a float32 rounding away from the exported one.
        self._threads_before = torch.get_num_threads()
        try:
            super().activate()
            torch.set_num_threads(min(self._threads_before, RUN_THREADS))
        except BaseException:
            torch.set_num_threads(self._threads_before)
            raise

    def deactivate(self) -> None:
        try:
            super().deactivate()
        finally:
            torch.set_num_threads(self._threads_before)

    def _activate_impl(self) -> None:
        self.model = build_model(self.source)

    def _infer_impl(self, feed: Feed) -> dict[str, np.ndarray]:
        args = [torch.from_numpy(np.array(feed[spec.name])) for spec in self.input_specs]
        with torch.no_grad():
            outputs = self.model(*args)
        flat = list(outputs) if isinstance(outputs, (tuple, list)) else [outputs]
        return {name: value.detach().numpy() for name, value in zip(self.output_names, flat)}

    def _deactivate_impl(self) -> None:
        self.model = None


class TorchFloat64Runner(TorchRunner):
    """The oracle: a float64 copy of the user's model, float inputs cast to float64.

    Its outputs stay float64: they are what float32 programs try to reach. A model that cannot
    run in float64 (an op without a double kernel, a forward that casts to float32 itself)
    raises RunnerError, and the audit falls back to a stated estimate of the noise floor."""

    name = "pytorch_fp64"
    precision = "fp64"

    def __init__(self, source: Source, input_specs: list[TensorSpec], output_names: list[str],
                 perturb_seed: int | None = None) -> None:
        super().__init__(source, input_specs, output_names)
        # With a seed: every weight, buffer and float input moved by one float32 rounding (relative
        # 2^-24, random sign), to measure how much float32-sized errors grow through this model.
        self.perturb_seed = perturb_seed
        if perturb_seed is not None:
            self.name = f"pytorch_fp64_perturbed_{perturb_seed}"

    def _activate_impl(self) -> None:
        self.model = float64_copy(build_model(self.source))
        if self.perturb_seed is not None:
            self.model = perturbed(self.model, self.perturb_seed)
        self._rng = np.random.default_rng(self.perturb_seed)

    def _infer_impl(self, feed: Feed) -> dict[str, np.ndarray]:
        arrays = [to_float64(np.array(feed[spec.name])) for spec in self.input_specs]
        if self.perturb_seed is not None:
            arrays = [perturb_array(a, self._rng) for a in arrays]
        args = [torch.from_numpy(a) for a in arrays]
        with torch.no_grad():
            outputs = self.model(*args)
        flat = list(outputs) if isinstance(outputs, (tuple, list)) else [outputs]
        values = {name: value.detach().numpy() for name, value in zip(self.output_names, flat)}
        for name, value in values.items():
            if np.issubdtype(value.dtype, np.floating) and value.dtype != np.float64:
                raise RunnerError(f"{self.name}: output '{name}' came out as {value.dtype}, not float64: the model casts "
                                  "internally, so it cannot serve as a float64 oracle")
        return values
