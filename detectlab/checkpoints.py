"""A run's ``checkpoints/state.json``: which checkpoint is the last, which the best, at which
epoch (written by :class:`detectlab.training.callbacks.AtomicCheckpoint`, read by ``--resume``
and by the evaluation of ``best.keras``)."""

from __future__ import annotations

import json
from pathlib import Path

STATE_FILE = "state.json"


def read_state(directory) -> dict | None:
    """The state of the checkpoints in ``directory`` (None when there is none)."""
    path = Path(directory) / STATE_FILE
    if not path.is_file():
        return None
    return json.loads(path.read_text())
