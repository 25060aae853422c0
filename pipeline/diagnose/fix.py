"""--fix OUT.keras: the port with every correction, same layers and weights, saved and proven
by loading it back (safely) and rerunning the comparison."""
from __future__ import annotations

import os
from pathlib import Path

from pipeline.diagnose.corrections import rebuild
from pipeline.diagnose.explain import applied
from pipeline.diagnose.load import load_port
from pipeline.artifacts.diagnose_record import Finding
from pipeline.errors import UsageError


def check_fix_path(path: Path, port: Path) -> None:
    if path.resolve() == port.resolve():
        raise UsageError(f"--fix {path}: is the port itself; write the corrected port to another file")
    if path.suffix != ".keras":
        raise UsageError(f"--fix {path}: the corrected port is written as a Keras 3 file; name it *.keras")
    if not path.parent.exists():
        raise UsageError(f"--fix {path}: folder {path.parent} does not exist")


def write_fixed(port, findings: list[Finding], path: Path):
    """Save the corrected port atomically and return it as loaded back from the file."""
    corrections = applied(findings)
    model = rebuild(port, corrections)
    tmp = path.with_name(f".{path.stem}.tmp.keras")
    model.save(tmp)
    os.replace(tmp, path)
    return load_port(path), [c.description for c in corrections]
