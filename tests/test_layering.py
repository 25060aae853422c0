"""The import picture of pipeline/: no circle, and no arrow from an earlier stage to a later one.

The tree reads as the run does: config -> export -> validate -> lint -> convert -> audit -> repair ->
diagnose -> report -> deploy. Every import counts, also one inside a function: a lazy import is still an
arrow. The README's "How the code is laid out" says which folder is in which layer.
"""
from __future__ import annotations

import ast
from pathlib import Path

from tests.support import REPO

# Shared by every stage, importing no stage: the schema, names, errors, the artifact folder and its
# records, models, runners, converter adapters, inputs, comparison metrics and lint findings.
INFRASTRUCTURE = {"__init__", "config", "errors", "names", "console", "profile", "process", "patching", "keras_io", "inputs", "shapes",
                  "artifacts", "model", "runners", "converters", "compare", "findings"}
STAGES = ["export", "validate", "lint", "convert", "audit", "repair", "diagnose", "report", "deploy"]
# Drivers and examples: they may import any stage, and nothing in the pipeline imports them.
DRIVERS = {"__main__", "cli", "orchestrate", "batch", "tools", "zoo"}


def module_names(root: Path) -> dict[str, Path]:
    """Dotted module name -> file, for every .py file under root/pipeline."""
    names = {}
    for path in sorted((root / "pipeline").rglob("*.py")):
        parts = list(path.relative_to(root).with_suffix("").parts)
        names[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return names


def imports(root: Path) -> dict[str, set[str]]:
    """Module -> the pipeline modules it imports anywhere in its file (top level or inside a function)."""
    names = module_names(root)
    graph = {}
    for name, path in names.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        targets = set()
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                targets |= {_known(alias.name, names) for alias in node.names}
            elif isinstance(node, ast.ImportFrom):
                base = _absolute(node, package)
                # `from pipeline.report import sections` imports a module; `from pipeline.lint import Finding` a name
                targets |= {_known(f"{base}.{alias.name}", names) or _known(base, names) for alias in node.names}
        graph[name] = {target for target in targets if target and target != name}
    return graph


def _absolute(node: ast.ImportFrom, package: str) -> str:
    if not node.level:
        return node.module or ""
    base = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
    return f"{base}.{node.module}" if node.module else base


def _known(name: str, names: dict[str, Path]) -> str | None:
    """The deepest pipeline module a dotted name falls in (None outside the pipeline)."""
    while name and name not in names:
        name = name.rpartition(".")[0]
    return name or None


def layer(module: str) -> float:
    """Infrastructure -1, the stages 0..8 in run order, drivers last."""
    top = module.split(".")[1] if "." in module else "__init__"  # pipeline/__init__.py: infrastructure
    if top in INFRASTRUCTURE:
        return -1
    if top in STAGES:
        return STAGES.index(top)
    if top in DRIVERS:
        return float("inf")
    raise AssertionError(f"pipeline.{top} is in no layer: add it to tests/test_layering.py and README's layout")


def upward(graph: dict[str, set[str]]) -> list[str]:
    """Every arrow from a module to one in a later layer (a stage to a later stage, infrastructure to a stage)."""
    return [f"{a} -> {b}" for a, targets in sorted(graph.items()) for b in sorted(targets)
            if a.split(".")[:2] != b.split(".")[:2] and layer(b) > layer(a)]


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan, iterative)."""
    index, low, stack, on_stack, found = {}, {}, [], set(), []
    for start in sorted(graph):
        if start in index:
            continue
        work = [(start, iter(sorted(graph[start])))]
        index[start] = low[start] = len(index)
        stack.append(start)
        on_stack.add(start)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph.get(child, ())))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    found.append(sorted(component))
    return found


def test_no_module_imports_in_a_circle():
    assert cycles(imports(REPO)) == []


def test_no_arrow_from_an_earlier_stage_to_a_later_one():
    assert upward(imports(REPO)) == []


def test_every_folder_of_the_pipeline_has_a_layer():
    for module in imports(REPO):
        layer(module)


def _package(root: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        path = root / "pipeline" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return root


def test_a_lazy_upward_import_and_a_circle_are_caught(tmp_path):
    root = _package(tmp_path, {
        "__init__.py": "", "lint/__init__.py": "", "report/__init__.py": "", "deploy/__init__.py": "",
        "lint/rule.py": "def f():\n    from pipeline.report import html\n",  # a stage reaching a later one
        "report/html.py": "from pipeline.lint import rule\n",
        "deploy/int8.py": "from pipeline.deploy import verify\n",
        "deploy/verify.py": "from .int8 import metrics\n",  # relative, and back: a circle
    })
    graph = imports(root)
    assert upward(graph) == ["pipeline.lint.rule -> pipeline.report.html"]
    assert cycles(graph) == [["pipeline.deploy.int8", "pipeline.deploy.verify"],
                             ["pipeline.lint.rule", "pipeline.report.html"]]
