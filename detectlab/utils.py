"""Small helpers shared across the package: atomic writes, logging, CPU flags, named layers."""

from __future__ import annotations

import contextlib
import functools
import json
import logging
import os
import tempfile
from pathlib import Path
from typing import Any, Iterator

log = logging.getLogger("detectlab")


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, suffix: str | None = None) -> Iterator[str]:
    """Yield a temporary path beside ``path``; move it over ``path`` only on success.

    A reader never sees a half-written file: a killed process leaves the old file intact.
    ``suffix`` keeps the extension writers insist on (Keras wants ``.keras``/``.h5``).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    suffix = suffix if suffix is not None else "".join(path.suffixes)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=f".tmp{suffix}", dir=path.parent)
    os.close(fd)
    os.unlink(tmp)  # writers create the file themselves
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    with atomic_path(path) as tmp:
        with open(tmp, "w") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())


def atomic_write_json(path: str | os.PathLike, data: Any) -> None:
    atomic_write_text(path, json.dumps(data, indent=2) + "\n")


def read_yaml(path: Path, error: type[Exception]) -> Any:
    """Parsed YAML of ``path``; invalid YAML raises ``error`` naming the file and line."""
    import yaml

    try:
        return yaml.safe_load(Path(path).read_text())
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark is not None else ""
        raise error(f"{path}:{where} invalid YAML: {getattr(exc, 'problem', exc)}") from None


def setup_logging(verbose: bool = True) -> None:
    """One-line log records on stderr for the command-line tools."""
    if log.handlers:
        return
    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter("[detectlab] %(message)s"))
    log.addHandler(handler)
    log.setLevel(logging.INFO if verbose else logging.WARNING)
    log.propagate = False


@functools.lru_cache(maxsize=None)
def cpu_flags(cpuinfo: str = "/proc/cpuinfo") -> frozenset:
    """The CPU's feature flags as Linux reports them (empty where ``cpuinfo`` is absent)."""
    try:
        with open(cpuinfo) as f:
            line = next((l for l in f if l.startswith(("flags", "Features"))), "")
    except OSError:
        return frozenset()
    return frozenset(line.partition(":")[2].split())


def named_layers(model) -> list:
    """``model.layers``, with each layer that groups named layers (``named_parts``, e.g.
    :class:`detectlab.layers.conv_batch_norm.ConvBatchNorm`) replaced by those layers: the
    layers that weight files, layer presets and ``get_layer`` know by name."""
    out = []
    for layer in model.layers:
        out.extend(getattr(layer, "named_parts", (layer,)))
    return out
