"""What lint rules look at: the model context, plus the converted TF graph for "tf" phase rules."""
from __future__ import annotations

from dataclasses import dataclass

from pipeline.model.context import ModelContext


@dataclass
class LintContext(ModelContext):
    tf_graph: "TFGraph | None" = None  # noqa: F821  the converted SavedModel, for "tf" phase rules
    tflite: "dict[str, Path] | None" = None  # noqa: F821  precision ("fp32", "fp16") -> converted .tflite file, "tf" phase
