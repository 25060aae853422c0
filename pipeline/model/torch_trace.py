"""Facts about the PyTorch model that need one forward pass: which module feeds which,
the shape each module's input really had, and the padding each conv and pool call really applied."""
from __future__ import annotations

from dataclasses import dataclass, field

import torch

from pipeline.errors import first_line
from pipeline.model.torch_padding import AppliedPadding, PaddingWatch


@dataclass
class ModuleTrace:
    # (producer, consumer) leaf-module pairs where the consumer's first input is the very
    # tensor the producer returned: what exporters fuse (Conv+BatchNorm, ZeroPad2d+Conv).
    edges: list[tuple[str, str]] = field(default_factory=list)
    # The first input's shape at each leaf module's first call: padding done in forward code
    # (F.pad) before a conv shows up here, not in the module's attributes.
    input_shapes: dict[str, tuple[int, ...]] = field(default_factory=dict)
    # The padding each module's conv or pool call applied, its own plus pads done just before
    # (model/torch_padding.py); a module that runs no such call has no entry.
    padding: dict[str, AppliedPadding] = field(default_factory=dict)
    padding_unmeasured: str = ""  # why `padding` is empty, when the watch could not run


def trace_modules(model: torch.nn.Module, example_args: tuple) -> ModuleTrace:
    trace = ModuleTrace()
    produced_by: dict[int, str] = {}
    hooks = []

    def after(path):
        return lambda module, args, output: produced_by.__setitem__(id(output), path)

    def before(path):
        def hook(module, args):
            first = args[0] if args else None
            if isinstance(first, torch.Tensor):
                trace.input_shapes.setdefault(path, tuple(first.shape))
            source = produced_by.get(id(first)) if first is not None else None
            if source is not None and (source, path) not in trace.edges:
                trace.edges.append((source, path))
        return hook

    running: list[str] = []  # the modules whose forward is running, innermost last

    def enter(path):
        def hook(module, args) -> None:
            running.append(path)
        return hook

    def leave(module, args, output) -> None:
        running.pop()

    for path, module in model.named_modules():
        if path and not list(module.children()):
            hooks += [module.register_forward_pre_hook(before(path)), module.register_forward_hook(after(path))]
        if path:
            hooks += [module.register_forward_pre_hook(enter(path)), module.register_forward_hook(leave)]
    watch = PaddingWatch(running)
    try:
        _forward(model, example_args, watch, trace)
    finally:
        for hook in hooks:
            hook.remove()
    trace.padding = watch.applied
    return trace


def _forward(model: torch.nn.Module, example_args: tuple, watch: PaddingWatch, trace: ModuleTrace) -> None:
    """One forward pass under the padding watch; if it fails there, once more without it (the padding then
    stays unmeasured, and says why), so that the watch never costs a model its lint."""
    try:
        with torch.no_grad(), watch:
            model(*example_args)
        return
    except Exception as exc:  # the model's own error is raised again by the plain pass below
        trace.padding_unmeasured = f"the forward pass failed under the padding watch: {type(exc).__name__}: {first_line(exc)}"
    trace.edges.clear()
    trace.input_shapes.clear()
    watch.applied.clear()
    watch.stack.clear()  # the failed pass left the modules it was in
    with torch.no_grad():
        model(*example_args)
