"""What travels together through the audit's layer-by-layer pass."""
from __future__ import annotations

from dataclasses import dataclass

from pipeline.artifacts.folder import ArtifactDir
from pipeline.artifacts.records import ConvertRecord, ExportRecord
from pipeline.compare import Comparison
from pipeline.audit.judge import Oracle
from pipeline.config import Source
from pipeline.inputs import Feed


@dataclass(frozen=True)
class LayerRequest:
    source: Source
    artifacts: ArtifactDir
    export: ExportRecord
    convert: ConvertRecord
    feeds: list[Feed]
    overrides: dict
    oracle: Oracle
    comparisons: list[Comparison]  # the verdicts at the outputs: only a backend that failed there is localized
