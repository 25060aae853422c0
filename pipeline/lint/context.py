"""What lint rules look at: the model context, plus the converted TF graph for "tf" phase rules."""
from __future__ import annotations

from dataclasses import dataclass, field

from pipeline.model.context import ModelContext


@dataclass
class LintContext(ModelContext):
    tf_graph: "TFGraph | None" = None  # noqa: F821  the converted SavedModel, for "tf" phase rules
    tflite: "dict[str, Path] | None" = None  # noqa: F821  precision ("fp32", "fp16") -> converted .tflite file, "tf" phase
    _tflite_graphs: dict = field(default_factory=dict, init=False, repr=False, compare=False)

    def tflite_graph(self, precision: str) -> "TFLiteGraph | None":  # noqa: F821
        """The graph of the converted TFLite file of this precision, read once; None without such a file."""
        from pipeline.lint.tflite_graph import TFLiteGraph

        path = (self.tflite or {}).get(precision)
        if path is None:
            return None
        if path not in self._tflite_graphs:
            self._tflite_graphs[path] = TFLiteGraph.read(path)
        return self._tflite_graphs[path]
