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


def read_text(path: str | os.PathLike, error: type[Exception]) -> str:
    """The text of a user's file: UTF-8 (a byte-order mark is dropped), or UTF-16 when it starts
    with its byte-order mark (what Windows Notepad and PowerShell write). Anything else raises
    ``error`` naming the file and the first byte that is not text."""
    import codecs

    path = Path(path)
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise error(f"{path}: file not found") from None
    except IsADirectoryError:
        raise error(f"{path}: a folder, not a file") from None
    except OSError as exc:
        raise error(f"{path}: cannot read ({exc.strerror or exc})") from None
    utf16 = raw.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE))
    try:
        text = raw.decode("utf-16" if utf16 else "utf-8-sig")
    except UnicodeDecodeError as exc:
        raise error(f"{path}: not {'UTF-16' if utf16 else 'UTF-8'} text (byte 0x{raw[exc.start]:02x} at offset "
                    f"{exc.start}); save it as UTF-8") from None
    if "\x00" in text:
        raise error(f"{path}: not a text file (it holds NUL bytes)")
    return text


def read_json(path: str | os.PathLike, error: type[Exception]) -> Any:
    """Parsed JSON of a user's file (see :func:`read_text`); errors name the file, line and column."""
    text = read_text(path, error)
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise error(f"{path}: invalid JSON at line {exc.lineno} column {exc.colno}: {exc.msg}") from None
    except RecursionError:
        raise error(f"{path}: JSON nested too deeply") from None


# YAML aliases let a few hundred bytes stand for billions of values (a "billion laughs"):
# documents that expand to more values than this are refused before they are built.
MAX_YAML_VALUES = 1_000_000


def read_yaml(path: str | os.PathLike, error: type[Exception]) -> Any:
    """Parsed YAML of ``path`` (safe types only); invalid YAML raises ``error`` naming the file and line."""
    return parse_yaml(read_text(path, error), str(path), error)


def parse_yaml(text: str, source: str, error: type[Exception]) -> Any:
    """``text`` parsed as YAML with the safe loader; a document expanding to more than
    :data:`MAX_YAML_VALUES` values through aliases, or nested too deeply, is refused."""
    import yaml

    loader = None
    try:
        loader = yaml.SafeLoader(text)  # (refuses control characters)
        node = loader.get_single_node()
        if node is None:
            return None
        if _expanded_size(node, {}, set()) > MAX_YAML_VALUES:
            raise error(f"{source}: YAML expands to more than {MAX_YAML_VALUES:,} values through its aliases "
                        "(&anchor / *alias); refusing to build it")
        return loader.construct_document(node)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark is not None else ""
        reason = getattr(exc, "problem", None) or " ".join(str(exc).replace('in "<unicode string>", position', "at position").split())
        raise error(f"{source}:{where} invalid YAML: {reason}") from None
    except RecursionError:
        raise error(f"{source}: YAML nested too deeply (or an alias that contains itself)") from None
    finally:
        if loader is not None:
            loader.dispose()


def _expanded_size(node, sizes: dict, active: set) -> int:
    """Values ``node`` stands for once every alias is expanded (shared nodes counted once per use)."""
    key = id(node)
    if key in sizes:
        return sizes[key]
    if key in active:
        raise RecursionError  # an alias inside its own anchor
    active.add(key)
    if isinstance(node.value, list):
        children = [part for item in node.value for part in (item if isinstance(item, tuple) else (item,))]
        size = 1 + sum(_expanded_size(child, sizes, active) for child in children)
    else:
        size = 1
    active.discard(key)
    sizes[key] = min(size, MAX_YAML_VALUES + 1)
    return sizes[key]


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
