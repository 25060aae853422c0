"""pipeline/report/sections/diagnose.py: the Markdown and HTML sections report.md/report.html embed."""
from __future__ import annotations

import base64
import re

from pipeline.artifacts.diagnose_record import FAITHFUL, NOT_FAITHFUL, DiagnoseRecord, Finding, LayerRow, OutputError


def _record(findings=(), fixed=None) -> DiagnoseRecord:
    rows = tuple(LayerRow(i, f"l{i}", str(i), "bn", 1e-3 * (i + 1), 1e-3 * (i + 1), 1e-7, 1e4 * (i + 1), False)
                 for i in range(3))
    return DiagnoseRecord(
        model="m", port="/p/port.keras", layout="channels_last (NHWC)", samples=7,
        verdict=NOT_FAITHFUL if findings else FAITHFUL, findings=tuple(findings),
        before=OutputError(3e-3, 3e-3, 1e-7, 3e4, False), layers=rows, first_divergent="l0",
        mapping={"pairs": [], "ambiguities": ["bn1: weights equal those of 1, 3; mapped to 3 by order"]}, fixed=fixed,
    )


FINDING = Finding("bn_epsilon", "error", "bn", "bn", "epsilon", 1e-5, 1e-3, "set epsilon=1e-05 | now",
                  error_before=3e-3, error_after=1e-7, explained=1.0)
WARNING = Finding("bn_momentum", "warning", "bn", "bn", "momentum", 0.9, 0.99, "training only",
                  error_before=3e-3, error_after=3e-3, explained=0.0)


def test_markdown_section_sorts_culprits_by_error_explained():
    from pipeline.report.sections.diagnose import markdown_section

    lines = markdown_section(_record([WARNING, FINDING]))
    assert all(isinstance(line, str) for line in lines)
    assert lines[0].startswith("## ")
    rows = [line for line in lines if line.startswith("| error") or line.startswith("| warning")]
    assert rows[0].startswith("| error | bn_epsilon") and "100.0%" in rows[0]
    assert "set epsilon=1e-05 \\| now" in rows[0]  # pipes in messages do not break the table
    assert any("ambiguous: bn1" in line for line in lines)


def test_html_section_embeds_the_depth_plot():
    from pipeline.report.sections.diagnose import html_section

    fixed = {"path": "f.keras", "verdict": FAITHFUL, "after": {"max_abs": 1e-7, "ratio": 0.5},
             "layers": [{"depth": i, "error": 1e-8} for i in range(3)]}
    section = html_section(_record([FINDING], fixed=fixed))
    assert section.startswith('<section id="diagnose">') and section.endswith("</section>")
    png = re.search(r'src="data:image/png;base64,([^"]+)"', section).group(1)
    assert base64.b64decode(png).startswith(b"\x89PNG")
    assert "http" not in section  # self-contained


def test_to_json_has_the_issue_keys_and_counts():
    payload = _record([FINDING, WARNING]).to_json()
    assert payload["counts"] == {"error": 1, "warning": 1, "info": 0}
    assert payload["max_abs_before"] == 3e-3 and payload["max_abs_after_fix"] is None
    assert payload["findings"][0]["explained"] == 1.0


def test_sections_render_the_same_from_diagnose_json():
    import json

    from pipeline.artifacts.folder import finite
    from pipeline.report.sections.diagnose import markdown_section

    record = _record([FINDING, WARNING])
    again = DiagnoseRecord.from_json(json.loads(json.dumps(finite(record.to_json()))))
    assert markdown_section(again) == markdown_section(record)
