"""report.md and report.html carry the Keras-port diagnosis when one was run into the artifact folder."""
from __future__ import annotations

import pytest

from pipeline.model.torch_model import build_model
from pipeline.config import resolve_source
from tests.diagnose.ports import focus_port
from tests.support import run_cli

pytestmark = pytest.mark.slow


def test_a_diagnosis_in_the_folder_is_a_section_of_the_report(seed_copy, tmp_path):
    port = focus_port(build_model(resolve_source("seed_ym")))  # Keras' default epsilon, as in the report
    port.save(tmp_path / "port.keras")
    assert run_cli("diagnose", "seed_ym", "--keras", str(tmp_path / "port.keras"), "--out", str(seed_copy)) == 1
    assert run_cli("report", "seed_ym", "--out", str(seed_copy)) == 0  # the conversion itself passes
    markdown = (seed_copy / "report.md").read_text()
    assert "## Diagnose: hand-written Keras port" in markdown and "bn_epsilon" in markdown
    page = (seed_copy / "report.html").read_text()
    assert '<section id="diagnose">' in page and "data:image/png;base64," in page
