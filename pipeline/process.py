"""What the pipeline does to its own process: only when it owns it (`python -m pipeline`), never when a
test or another program calls it in theirs."""
from __future__ import annotations

import gc

_owned = False


def own() -> None:
    """This process is the pipeline's (pipeline/__main__.py, a conversion child once it has imported TensorFlow)."""
    global _owned
    _owned = True
    settle()


def settle() -> None:
    """After large imports: what they made lives as long as the process, so it goes out of the collector's
    reach, and a full collection walks only what the run makes (measured on seed_ym: its export 2.25 ->
    2.0 s with torch, torch.export and onnxscript settled). Nothing in a process the pipeline does not own."""
    if _owned:
        gc.freeze()
