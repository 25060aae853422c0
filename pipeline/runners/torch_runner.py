"""PyTorch runner: the user's model in eval mode, under no_grad."""
from __future__ import annotations

import numpy as np
import torch

from pipeline.config import Source
from pipeline.inputs import Feed, TensorSpec
from pipeline.runners.base import Runner
from pipeline.model.torch_model import build_model


class TorchRunner(Runner):
    name = "pytorch"

    def __init__(self, source: Source, input_specs: list[TensorSpec], output_names: list[str]) -> None:
        super().__init__(input_specs, output_names)
        self.source = source
        self.model: torch.nn.Module | None = None

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
