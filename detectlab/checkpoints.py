"""A run's ``checkpoints/state.json``: which checkpoint is the last, which the best, at which
epoch (written by :class:`detectlab.training.callbacks.AtomicCheckpoint`, read by ``--resume``
and by the evaluation of ``best.keras``)."""

from __future__ import annotations

import re
from pathlib import Path

from detectlab.errors import TrainingError, WeightsError
from detectlab.utils import log, read_json

STATE_FILE = "state.json"


def read_state(directory, damaged_ok: bool = True) -> dict | None:
    """The state of the checkpoints in ``directory``: None when there is none, or when it is
    damaged and ``damaged_ok`` (else a one-line :class:`TrainingError` naming it)."""
    path = Path(directory) / STATE_FILE
    if not path.is_file():
        return None
    try:
        state = read_json(path, TrainingError)
        if not isinstance(state, dict) or not isinstance(state.get("epoch"), int) or not isinstance(state.get("checkpoint"), str):
            raise TrainingError(f"{path}: damaged (no 'epoch' and 'checkpoint')")
    except TrainingError:
        if damaged_ok:
            return None
        raise
    return state


def resume_state(directory) -> dict | None:
    """The state to resume from: ``state.json`` and the checkpoint it names, both checked.

    When either is damaged (a disk fault; our own writes are atomic), the newest intact
    ``epoch_NNN.keras`` before it is used and a warning says so; when there is none, a
    one-line :class:`TrainingError` names the damaged file. None when there is no state.
    """
    from detectlab.weights.by_name import check_keras_archive

    directory, named = Path(directory), None
    try:
        state = read_state(directory, damaged_ok=False)
        if state is None:
            return None
        named = state["checkpoint"]
        check_keras_archive(directory / named)
        return state
    except (TrainingError, WeightsError) as exc:
        problem = str(exc)
    for candidate in sorted(directory.glob("epoch_*.keras"), reverse=True):
        epoch = re.fullmatch(r"epoch_(\d+)\.keras", candidate.name)
        if epoch is None or candidate.name == named:
            continue
        try:
            check_keras_archive(candidate)
        except WeightsError:
            continue
        log.warning("%s; resuming from %s (epoch %d), the newest intact checkpoint", problem, candidate.name,
                    int(epoch.group(1)))
        return {"epoch": int(epoch.group(1)), "checkpoint": candidate.name}
    raise TrainingError(f"{problem}; no intact earlier checkpoint in {directory} to resume from")
