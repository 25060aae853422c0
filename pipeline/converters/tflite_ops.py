"""Which operators a .tflite file needs, read from its flatbuffer (no interpreter, no weights).

Builtin ops run on every standard TFLite/LiteRT runtime. Select TF ops (custom ops named
Flex<Op>) need the Flex delegate, which standard runtimes lack. Other custom ops need the
application to register them.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class TFLiteOps:
    builtin: tuple[str, ...]
    select_tf: tuple[str, ...]  # "FlexErf", ...
    custom: tuple[str, ...]  # other custom ops

    @property
    def standard(self) -> bool:
        """Runs on the standard interpreter, with builtin ops only."""
        return not self.select_tf and not self.custom

    def to_json(self) -> dict:
        return {"standard": self.standard, "builtin_ops": list(self.builtin), "select_tf_ops": list(self.select_tf),
                "custom_ops": list(self.custom)}


def read_ops(path: Path) -> TFLiteOps:
    # LiteRT's copy of the TFLite flatbuffer schema: reading a file's ops needs no TensorFlow (its import
    # costs seconds and half a gigabyte in a process that has not loaded it).
    from ai_edge_litert import schema_py_generated as schema

    model = schema.Model.GetRootAs(path.read_bytes(), 0)
    names = {code: name for name, code in vars(schema.BuiltinOperator).items() if not name.startswith("_")}
    builtin, select_tf, custom = set(), set(), set()
    for i in range(model.OperatorCodesLength()):
        code = model.OperatorCodes(i)
        number = max(code.BuiltinCode(), code.DeprecatedBuiltinCode())
        if names.get(number) != "CUSTOM":
            builtin.add(names.get(number, f"BUILTIN_{number}"))
            continue
        name = (code.CustomCode() or b"").decode()
        (select_tf if name.startswith("Flex") else custom).add(name)
    return TFLiteOps(tuple(sorted(builtin)), tuple(sorted(select_tf)), tuple(sorted(custom)))


def io_shapes(path: Path) -> tuple[list[list[int]], list[list[int]]]:
    """The shapes of the main subgraph's inputs and outputs, in order, read from the flatbuffer."""
    from ai_edge_litert import schema_py_generated as schema

    graph = schema.Model.GetRootAs(path.read_bytes(), 0).Subgraphs(0)
    def shape(index: int) -> list[int]:
        dims = graph.Tensors(index).ShapeAsNumpy()  # 0, not an array, when the file stores no shape (a scalar)
        return [int(d) for d in dims] if hasattr(dims, "__len__") else []

    return ([shape(graph.Inputs(i)) for i in range(graph.InputsLength())],
            [shape(graph.Outputs(i)) for i in range(graph.OutputsLength())])
