"""Deployment preparation: what was shipped, and proof that it still holds.

manifest.json and MODEL_CARD.md are written at the end of a run (`write`); `verify`
re-checks them later without PyTorch; `package` makes a reproducible tarball.
"""
from __future__ import annotations

from pipeline.artifacts.folder import ArtifactDir
from pipeline.config import Source


def write(source: Source | None, artifacts: ArtifactDir) -> dict:
    """Write MODEL_CARD.md, then manifest.json (which lists the card's hash too)."""
    from pipeline.deploy import manifest, model_card

    content = manifest.build(source, artifacts)
    model_card.write(artifacts.root, content)
    return manifest.write(artifacts.root, source, content)
