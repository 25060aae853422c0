"""How the converted TF models' inputs and outputs map to the ONNX ones.

Written by the convert stage into convert.json and read by every TF runner,
so each runner can adapt names and layouts itself.
"""
from __future__ import annotations

from dataclasses import dataclass

from pipeline.runners.layout import Layout


@dataclass(frozen=True)
class TensorBinding:
    name: str  # the ONNX / PyTorch name
    tf_name: str  # the name TF gave it (Keras layer / signature key)
    index: int  # position in the Keras model's inputs or outputs
    layout: Layout

    def to_json(self) -> dict:
        return {"name": self.name, "tf_name": self.tf_name, "index": self.index, **self.layout.to_json()}

    @classmethod
    def from_json(cls, raw: dict) -> "TensorBinding":
        return cls(raw["name"], raw["tf_name"], raw["index"], Layout.from_json(raw))


@dataclass(frozen=True)
class TFModelIO:
    inputs: list[TensorBinding]
    outputs: list[TensorBinding]

    def to_json(self) -> dict:
        return {"inputs": [b.to_json() for b in self.inputs], "outputs": [b.to_json() for b in self.outputs]}

    @classmethod
    def from_json(cls, raw: dict) -> "TFModelIO":
        return cls([TensorBinding.from_json(b) for b in raw["inputs"]], [TensorBinding.from_json(b) for b in raw["outputs"]])
