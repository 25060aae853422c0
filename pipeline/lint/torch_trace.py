"""Facts about the PyTorch model that need one forward pass: which module feeds which."""
from __future__ import annotations

import torch


def module_edges(model: torch.nn.Module, example_args: tuple) -> list[tuple[str, str]]:
    """(producer, consumer) leaf-module pairs where the consumer's first input is the very
    tensor the producer returned: what exporters fuse (Conv+BatchNorm, ZeroPad2d+Conv)."""
    produced_by: dict[int, str] = {}
    edges: list[tuple[str, str]] = []
    hooks = []

    def after(path):
        return lambda module, args, output: produced_by.__setitem__(id(output), path)

    def before(path):
        def hook(module, args):
            source = produced_by.get(id(args[0])) if args else None
            if source is not None and (source, path) not in edges:
                edges.append((source, path))
        return hook

    for path, module in model.named_modules():
        if path and not list(module.children()):
            hooks += [module.register_forward_pre_hook(before(path)), module.register_forward_hook(after(path))]
    try:
        with torch.no_grad():
            model(*example_args)
    finally:
        for hook in hooks:
            hook.remove()
    return edges
