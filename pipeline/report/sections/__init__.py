"""The report's sections that later stages' records bring: one module per section, found automatically.

Each module in this folder renders one stage's record (read through `ArtifactDir.read_if_any`) and
defines:
    KEY    its key in report.json (None there when its stage did not run)
    ORDER  its place among these sections (report.md and report.html show them in this order,
           after the localization and before the lint)
    collect(artifacts) -> dict | None   the record's content for report.json
    markdown(data) -> list[str]         report.md lines ([] for None)
    html(data) -> str                   one <section> of report.html ("" for None)
A section module reads records only: it never imports a stage (tests/test_layering.py checks).
Adding a section is adding a module here; the report core does not change.
"""
from __future__ import annotations

import importlib
import pkgutil
from types import ModuleType

from pipeline.artifacts.folder import ArtifactDir


def load() -> list[ModuleType]:
    """Every section module of this folder, in ORDER."""
    modules = [importlib.import_module(f"{__name__}.{info.name}") for info in pkgutil.iter_modules(__path__)]
    return sorted(modules, key=lambda module: module.ORDER)


def collect(artifacts: ArtifactDir) -> dict[str, dict | None]:
    """report.json's entries of these sections, read from their records."""
    return {module.KEY: module.collect(artifacts) for module in load()}


def markdown(report: dict) -> list[str]:
    return [line for module in load() for line in module.markdown(report.get(module.KEY))]


def html(report: dict) -> list[str]:
    return [module.html(report.get(module.KEY)) for module in load()]
