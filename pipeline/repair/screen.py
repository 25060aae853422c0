"""A layout candidate screened before its full conversion (issue #27: repairs that finish).

A full candidate costs a conversion (every file), an audit and, when it fails, the layer model the
search reads its next departure from. The screen builds only that layer model, with the candidate's
replacement entries, and compares it with ONNX Runtime over every tensor (localize.first_departure).
A candidate after which the TF model still departs at the same place, or earlier, or departs later while
every output stays exactly as far off (the nodes it replaced are passed over in the comparison), cannot
change what failed: it is turned down there, for one graph build. Any other goes on to the real
conversion and audit, which alone can pass it.
"""
from __future__ import annotations

import dataclasses
import json
import math
import shutil
from dataclasses import dataclass
from pathlib import Path

import onnx

from pipeline import inputs as shared_inputs
from pipeline.artifacts.folder import ArtifactDir, write_json
from pipeline.artifacts.records import ConvertRecord
from pipeline.artifacts.repair_record import PRF_FILE, Divergence
from pipeline.config import Source
from pipeline.console import console
from pipeline.repair.candidates import Candidate
from pipeline.repair.localize import first_departure, graph_position

SCREENS = "screen"  # under the search's trial folder


@dataclass(frozen=True)
class Screened:
    departure: Divergence | None  # with the candidate applied; None: no tensor departs, or no layer model
    position: int  # its graph position (-1: none)

    def turned_down(self, before: int, fixed_below: float, outputs_before: dict[str, float] | None = None) -> bool:
        """Whether the candidate moved the first departure earlier; left it where it was without cutting the
        error there below `fixed_below` (a hundredfold drop: one of two bugs at that node fixed); or moved it
        later while every output of the layer model stays exactly as far off as before (`outputs_before`):
        the nodes it changed are passed over in the comparison, so a departure past them alone proves nothing."""
        d = self.departure
        if d is None:
            return False
        if self.position < before or (self.position == before and not (d.error_out or 0.0) <= fixed_below):
            return True
        return self.position > before and self._outputs_unchanged(outputs_before)

    def _outputs_unchanged(self, outputs_before: dict[str, float] | None) -> bool:
        after = self.departure.outputs_error if self.departure else None
        return bool(after) and bool(outputs_before) and set(after) == set(outputs_before) and all(
            math.isclose(after[name], outputs_before[name], rel_tol=1e-4) for name in after)

    def reason(self, before: int, outputs_before: dict[str, float] | None = None) -> str:
        d = self.departure
        if self.position > before and self._outputs_unchanged(outputs_before):
            worst = max(d.outputs_error.values())
            return (f"screened out: with it, the TF layer model first departs later, at {d.op_type} '{d.node}', but its "
                    f"outputs stay as far from ONNX Runtime as before (max_abs {worst:.3g}); not converted")
        return (f"screened out: with it, the TF layer model still departs from ONNX Runtime at {d.op_type} "
                f"'{d.node}' (error {d.error_in:.3g} -> {d.error_out:.3g}), no later than before; not converted")


def screen(source: Source, artifacts: ArtifactDir, candidate: Candidate, onnx_path: Path, folder: Path) -> Screened:
    """The first departure of the layer model built with `candidate`'s entries, in `folder`."""
    screen_dir = _prepared(artifacts, candidate, folder)
    skip = frozenset(e["op_name"] for e in candidate.entries)
    feeds = shared_inputs.feeds(shared_inputs.load_npz(artifacts.inputs))
    try:
        departure = first_departure(source, screen_dir, onnx_path, feeds, skip)
    except Exception as exc:  # noqa: BLE001 (a screen that cannot run only costs time: the candidate is converted)
        console.print(f"repair: could not screen '{candidate.name}' ({type(exc).__name__}: {str(exc)[:200]}); converting it")
        departure = None
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    return Screened(departure, graph_position(onnx.load(str(onnx_path), load_external_data=False), departure))


def _prepared(artifacts: ArtifactDir, candidate: Candidate, folder: Path) -> ArtifactDir:
    """A folder whose convert.json holds the shipped conversion with the candidate's replacement file:
    what the layer model is built from, beside the inputs and records the comparison reads."""
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    for name in ("inputs.npz", "export.json", "validate.json"):
        if (artifacts.root / name).exists():
            shutil.copy2(artifacts.root / name, folder / name)
    (folder / PRF_FILE).write_text(json.dumps({"format_version": 1, "operations": candidate.entries}, indent=2) + "\n")
    convert = artifacts.read(ConvertRecord)
    options = {**convert.options, "param_replacement_file": PRF_FILE, "auto_replacement": False}
    screened = ArtifactDir(folder)
    write_json(screened.stage_record(ConvertRecord.STAGE), dataclasses.replace(convert, options=options, layers=None).to_json())
    return screened
