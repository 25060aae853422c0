"""Capture a model with dynamic dimensions through torch.export, or say in one line why it cannot be.

torch.onnx.export(dynamo=True) given an nn.Module and dynamic_shapes retries a failed capture with the
shapes torch.export suggests (a dimension made static) and then with draft_export: a model that asked
for a dynamic batch could come back with batch 1, silently. So the program is captured here, with the
config's dimensions and nothing else, and handed to torch.onnx.export as an ExportedProgram.
"""
from __future__ import annotations

import inspect
import logging
import re
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import onnx

from pipeline.errors import ConfigError, first_line

if TYPE_CHECKING:
    import torch

SHAPES_LOGGER = "torch.fx.experimental.symbolic_shapes"


class DynamicShapeError(ConfigError):
    """The model cannot be dynamic on an axis the config asks for (exit 2: the config or the model must change)."""


@dataclass(frozen=True)
class DynamicRequest:
    model: torch.nn.Module
    args: tuple  # traced at sizes >= 2 on the dynamic axes (torch.export specializes 0 and 1)
    example_args: tuple  # the config's example shapes
    input_names: list[str]
    dynamic: list[dict[int, str]]  # per input: axis -> name
    dims: dict[str, dict]  # name -> {min, max, multiple_of}


def dynamic_shapes(request: DynamicRequest) -> tuple:
    """torch.export.Dim per name, shared across inputs, bounded by the constraints (positional, one per input)."""
    from torch.export import Dim

    made: dict = {}
    for name in dict.fromkeys(n for axes in request.dynamic for n in axes.values()):
        constraint = request.dims.get(name, {})
        step = constraint.get("multiple_of", 1)
        low, high = constraint.get("min", 1), constraint.get("max")
        if step > 1:  # a multiple is Dim * step: the Dim counts multiples
            base = Dim(f"{name}_over_{step}", min=max(1, -(-low // step)), max=high // step if high else None)
            made[name] = step * base
        else:
            made[name] = Dim(name, min=low, max=high) if high else Dim(name, min=low)
    return tuple({axis: made[name] for axis, name in axes.items()} or None for axes in request.dynamic)


def capture(request: DynamicRequest) -> torch.export.ExportedProgram:
    """torch.export with the config's dynamic dimensions; DynamicShapeError when the model cannot keep them."""
    import torch

    log = _ShapeLog()
    logger = logging.getLogger(SHAPES_LOGGER)
    previous = logger.level
    logger.addHandler(log)
    logger.setLevel(logging.INFO)
    try:
        return torch.export.export(request.model, request.args, dynamic_shapes=dynamic_shapes(request), strict=False)
    except Exception as exc:  # torch.export raises many types; decided below whether the dimensions are the cause
        if not _static_capture_works(request):
            raise  # not about dynamic shapes: the exporter's ordinary failure, the next strategy's turn
        raise DynamicShapeError(_explain(request, exc, log)) from None
    finally:
        logger.removeHandler(log)
        logger.setLevel(previous)


def _static_capture_works(request: DynamicRequest) -> bool:
    import torch

    try:
        torch.export.export(request.model, request.example_args, strict=False)
    except Exception:  # the model cannot be captured at all: not a dynamic-shape problem
        return False
    return True


class _ShapeLog(logging.Handler):
    """torch.export's shape log: which symbol is which input axis, and each guard with the user's line."""

    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.symbols: dict[str, tuple[str, int]] = {}  # s77 -> (forward argument, axis)
        self.guards: list[tuple[str, str | None]] = []  # (guard, user source line)

    def emit(self, record: logging.LogRecord) -> None:
        message = record.getMessage()
        created = re.match(r"create_symbol (s\d+) = \d+ for L\['(\w+)'\]\.size\(\)\[(\d+)\]", message)
        if created:
            self.symbols[created.group(1)] = (created.group(2), int(created.group(3)))
        guard = re.match(r"eval (.+?) \[guard added\]", message)
        if guard:
            # The handler runs inside the call that added the guard: the stack holds the user's frame.
            self.guards.append((guard.group(1), user_line(traceback.extract_stack())))


def user_line(frames: list[traceback.FrameSummary]) -> str | None:
    """The innermost frame outside torch, the standard library and this pipeline's exporter: the model's code."""
    import torch

    skipped = (str(Path(torch.__file__).parent), str(Path(logging.__file__).parent), str(Path(__file__).parent))
    for frame in reversed(frames):
        if not frame.filename.startswith(skipped) and "site-packages" not in frame.filename:
            code = f": {frame.line.strip()}" if frame.line else ""
            return f"{Path(frame.filename).name}:{frame.lineno} in {frame.name}{code}"
    return None


def _explain(request: DynamicRequest, exc: Exception, log: _ShapeLog) -> str:
    axes = _named_axes(request, exc, log)
    where = ", ".join(f"input '{i}' axis {a} ('{n}')" for i, a, n in axes)
    guard = next((g for g in log.guards if _symbols(g[0]) & _symbols_of(axes, log)), None) or (log.guards[-1] if log.guards else None)
    reason = _named_symbols(first_line(exc, 240), request, log)
    if guard is not None:
        reason += f"; guard {_named_symbols(guard[0], request, log)}" + (f" at {guard[1]}" if guard[1] else "")
    elif (line := user_line(traceback.extract_tb(exc.__traceback__))) is not None:
        reason += f" at {line}"
    return (f"{where} cannot be dynamic: torch.export says: {reason}; make the model's code keep that size symbolic "
            "(x.shape[0] or -1, not a literal) or remove the axis from 'dynamic'")


def _named_symbols(text: str, request: DynamicRequest, log: _ShapeLog) -> str:
    """torch.export's internal symbols (s77) replaced by the config's dimension names."""
    params = list(inspect.signature(request.model.forward).parameters)
    names = {}
    for symbol, (arg, axis) in log.symbols.items():
        index = params.index(arg) if arg in params else -1
        if 0 <= index < len(request.dynamic) and axis in request.dynamic[index]:
            names[symbol] = request.dynamic[index][axis]
    return re.sub(r"\bs\d+\b", lambda m: names.get(m.group(0), m.group(0)), text)


def _named_axes(request: DynamicRequest, exc: Exception, log: _ShapeLog) -> list[tuple[str, int, str]]:
    """The (input, axis, name) the error is about: the names torch.export's message gives, else the
    symbols in it, else every dynamic axis."""
    every = [(i, a, n) for i, axes in zip(request.input_names, request.dynamic) for a, n in axes.items()]
    text = str(exc)
    violated = re.search(r"Constraints violated \(([^)]*)\)", text)
    if violated:
        names = {re.sub(r"_over_\d+$", "", n.strip()) for n in violated.group(1).split(",")}
        picked = [e for e in every if e[2] in names]
        if picked:
            return picked
    params = list(inspect.signature(request.model.forward).parameters)
    by_arg = {params[k]: request.input_names[k] for k in range(min(len(params), len(request.input_names)))}
    picked = []
    for symbol in sorted(_symbols(text)):
        arg, axis = log.symbols.get(symbol, (None, None))
        picked += [e for e in every if e[0] == by_arg.get(arg) and e[1] == axis]
    return list(dict.fromkeys(picked)) or every


def _symbols(text: str) -> set[str]:
    return set(re.findall(r"\bs\d+\b", text))


def _symbols_of(axes: list[tuple[str, int, str]], log: _ShapeLog) -> set[str]:
    wanted = {(i, a) for i, a, _ in axes}
    return {s for s, (arg, axis) in log.symbols.items() if (arg, axis) in wanted} or set(log.symbols)


def static_axes(path: Path, input_names: list[str], dynamic: list[dict[int, str]]) -> list[str]:
    """The asked-for dynamic axes that model.onnx fixed to a number: a model must never become static silently."""
    graph_inputs = {v.name: v for v in onnx.load(str(path), load_external_data=False).graph.input}
    fixed = []
    for name, axes in zip(input_names, dynamic):
        dims = graph_inputs[name].type.tensor_type.shape.dim if name in graph_inputs else []
        for axis, dim_name in axes.items():
            if axis < len(dims) and dims[axis].HasField("dim_value"):
                fixed.append(f"input '{name}' axis {axis} ('{dim_name}') is fixed at {dims[axis].dim_value}")
    return fixed
