"""Which logged value ranks ``best.keras`` and drives EarlyStopping / ReduceLROnPlateau.

``train.monitor`` (and ``early_stopping.monitor`` / ``reduce_lr_on_plateau.monitor``, which
default to it) must name a value the run logs: checked before the first epoch against
:func:`logged_names`, a miss is one :class:`ConfigError` line. The direction is inferred
from the name (``max`` for AP/AR/accuracy, ``min`` for losses) unless ``mode`` says.
"""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass

from detectlab.config import Config
from detectlab.errors import ConfigError
from detectlab.utils import log

_HIGHER_IS_BETTER = re.compile(r"^(?:val_)?(?:mask_)?(?:AP|AR)|acc")


def infer_mode(name: str, mode: str = "auto", field: str = "train.monitor") -> str:
    """``"min"`` or ``"max"``: ``mode`` unless "auto", else from the name."""
    if mode != "auto":
        return mode
    if _HIGHER_IS_BETTER.search(name):
        return "max"
    if "loss" in name:
        return "min"
    raise ConfigError(f"{field}: cannot tell whether '{name}' is better higher or lower; set its mode to max or min")


def logged_names(model, trainer, validation: bool, evaluation: tuple[str, ...] = ()) -> set[str]:
    """Every epoch-log name a run of ``model`` writes: what its ``trainer`` logs per step
    (named losses, metrics, ``loss``) and their ``val_`` twins with ``validation``, the
    trainer's own counters, ``learning_rate``, and ``evaluation`` (the COCO callback's names)."""
    names = trainer.step_log_names(model)
    logged = names | {"learning_rate"} | trainer.epoch_log_names()
    if validation:
        logged |= {f"val_{n}" for n in names}
    return logged | set(evaluation)


@dataclass(frozen=True)
class Monitor:
    name: str
    mode: str  # "min" or "max"


@dataclass(frozen=True)
class Monitors:
    checkpoint: Monitor
    plateau: Monitor | None
    early_stopping: Monitor | None


def resolve_monitors(cfg: Config, logged: set[str], validation: bool) -> Monitors:
    """``train.monitor``, ``reduce_lr_on_plateau`` and ``early_stopping`` checked against
    ``logged`` (a ``val_`` name falls back to its training value when there is no validation
    split, with a log line), each with its mode."""
    t = cfg.train

    def resolve(name: str, mode: str, field: str) -> Monitor:
        if name not in logged and name.startswith("val_") and not validation and name[4:] in logged:
            log.info("%s: no validation split, monitoring '%s' instead of '%s'", field, name[4:], name)
            name = name[4:]
        if name not in logged:
            raise ConfigError(f"{field}: '{name}' is never logged{_why(name, logged, cfg, validation)}")
        return Monitor(name, infer_mode(name, mode, field))

    checkpoint = resolve(t.monitor, t.monitor_mode, "train.monitor")
    plateau = early = None
    if t.reduce_lr_on_plateau is not None:
        p = t.reduce_lr_on_plateau
        plateau = resolve(p.monitor or t.monitor, p.mode if p.monitor else _mode(p.mode, t.monitor_mode), "train.reduce_lr_on_plateau.monitor")
    if t.early_stopping is not None:
        e = t.early_stopping
        early = resolve(e.monitor or t.monitor, e.mode if e.monitor else _mode(e.mode, t.monitor_mode), "train.early_stopping.monitor")
    return Monitors(checkpoint, plateau, early)


def _mode(own: str, inherited: str) -> str:
    return own if own != "auto" else inherited


def _why(name: str, logged: set[str], cfg: Config, validation: bool) -> str:
    if name.startswith("val_") and not validation:
        return " (there is no validation split: data.val is null)"
    if re.match(r"val_(mask_)?AP", name) and cfg.eval.interval == 0:
        return " (COCO evaluation during training is off: set eval.interval)"
    close = difflib.get_close_matches(name, sorted(logged), n=1)
    return f" (did you mean '{close[0]}'?)" if close else f"; logged: {', '.join(sorted(logged))}"
