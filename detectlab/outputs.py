"""Where detectlab may write, decided in one place.

The write rules (README, "Bad input"):

- a tool writes only where its flags point (``--out``, ``--workdir``, ...): an output folder
  that is a file, an output file that is a folder, or a place that cannot be written is
  refused up front in one line naming the flag (:func:`output_folder`, :func:`output_file`);
- no output replaces an input, and two outputs of one run never share a file
  (:func:`check_not_inputs`, :func:`check_not_holding_inputs`, :func:`distinct_outputs`,
  :func:`output_names`);
- a dataset file never chooses where detectlab writes: a file it asks to create (LabelMe
  ``imageData``) goes under the dataset folder, or the folder the user named, with a plain
  file name (:func:`dataset_write_target`); anything else is refused;
- every write is checked: :func:`detectlab.inference.visualize.save_image` raises when OpenCV
  could not write the image, and JSON/text go through :mod:`detectlab.utils`' atomic writes.

Errors about flags are :class:`ConfigError` (exit code 2), about data files
:class:`DataError` (exit code 1).
"""

from __future__ import annotations

import os
import re
from pathlib import Path, PurePosixPath
from typing import Iterable

from detectlab.errors import ConfigError, DataError

# characters a file name written from a dataset file may hold (others become "_")
_UNSAFE_NAME = re.compile(r"[^\w.\- ()+,@=]")


def same_file(a: str | os.PathLike, b: str | os.PathLike) -> bool:
    """True when ``a`` and ``b`` are the same file or folder (symlinks and hard links followed)."""
    if os.path.realpath(a) == os.path.realpath(b):
        return True
    try:
        return os.path.samefile(a, b)
    except OSError:
        return False


def _writable_ancestor(path: Path, flag: str, error=ConfigError) -> None:
    """Raise unless the nearest existing folder above ``path`` is a writable folder."""
    ancestor = Path(os.path.abspath(path)).parent
    while not ancestor.exists() and ancestor != ancestor.parent:
        ancestor = ancestor.parent
    if not ancestor.is_dir():
        raise error(f"{flag} {path}: {ancestor} is a file, not a folder")
    if not os.access(ancestor, os.W_OK | os.X_OK):
        raise error(f"{flag} {path}: cannot write in {ancestor} (read-only or no permission)")


def output_folder(path: str | os.PathLike, flag: str, create: bool = False) -> Path:
    """``path`` checked as a folder a tool may write into (created when ``create``).

    Refused in one line naming ``flag``: a file, a path through a file, a read-only place.
    Nothing is created unless ``create``, so a run refused later leaves no empty folder.
    """
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise ConfigError(f"{flag} {path}: is a file, not a folder")
    if path.is_dir():
        if not os.access(path, os.W_OK | os.X_OK):
            raise ConfigError(f"{flag} {path}: cannot write in this folder (read-only or no permission)")
    else:
        _writable_ancestor(path, flag)
    if create:
        path.mkdir(parents=True, exist_ok=True)
    return path


def output_file(path: str | os.PathLike, flag: str, inputs: Iterable[tuple[str, str | os.PathLike]] = ()) -> Path:
    """``path`` checked as a file a tool may write: not a folder, not one of ``inputs``
    (``(flag, path)`` pairs), in a folder that can be written (created if missing)."""
    path = Path(path)
    if path.is_dir():
        raise ConfigError(f"{flag} {path}: is a folder, not a file")
    check_not_inputs([(flag, path)], inputs)
    if path.parent.is_dir():
        if not os.access(path.parent, os.W_OK | os.X_OK):
            raise ConfigError(f"{flag} {path}: cannot write in {path.parent} (read-only or no permission)")
        if path.exists() and not os.access(path, os.W_OK) and not os.access(path.parent, os.W_OK):
            raise ConfigError(f"{flag} {path}: cannot be replaced (read-only)")
    else:
        _writable_ancestor(path, flag)
    return path


def check_not_inputs(outputs: Iterable[tuple[str, str | os.PathLike]],
                     inputs: Iterable[tuple[str, str | os.PathLike]]) -> None:
    """Raise when an output (``(flag, path)``) is one of the ``inputs``: never write over an input."""
    inputs = [(flag, p) for flag, p in inputs if p is not None]
    for flag, out in outputs:
        for in_flag, source in inputs:
            if same_file(out, source):
                raise ConfigError(f"{flag}: writing {out} would replace the input {source} ({in_flag}); "
                                  "choose another output")


def check_not_holding_inputs(folders: Iterable[tuple[str, str | os.PathLike]],
                             inputs: Iterable[tuple[str, str | os.PathLike]]) -> None:
    """Raise when a folder a tool writes files into (``(flag, path)``) is, or holds, one of the
    ``inputs``: e.g. ``convert --to voc --out DS`` rewrites ``DS/Annotations``, so an input read
    from there would be replaced."""
    inputs = [(flag, p) for flag, p in inputs if p is not None]
    for flag, folder in folders:
        root = os.path.realpath(folder)
        for in_flag, source in inputs:
            real = os.path.realpath(source)
            if real == root or real.startswith(root.rstrip(os.sep) + os.sep):
                raise ConfigError(f"{flag}: writing into {folder} would replace the input {source} ({in_flag}); "
                                  "choose another output")


def distinct_outputs(outputs: Iterable[tuple[str, str | os.PathLike]]) -> None:
    """Raise when two outputs of one run (``(flag, path)`` pairs) are the same file."""
    seen: list[tuple[str, str | os.PathLike]] = []
    for flag, path in outputs:
        for other_flag, other in seen:
            if same_file(path, other):
                raise ConfigError(f"{flag} and {other_flag} are the same file ({path}): each output needs its own")
        seen.append((flag, path))


def output_names(inputs: list[Path], reserved: Iterable[str] = ()) -> list[str]:
    """One distinct output name per input, without a suffix (the caller adds ``.jpg`` ...).

    The name is the input's stem. Inputs of the same stem from different folders keep as many
    parent folders as tell them apart (``a/1.jpg``, ``b/1.jpg`` -> ``a/1``, ``b/1``: subfolders
    of the output folder); in one folder, the first keeps the stem and the others add their
    extension (``photo.jpg``, ``photo.png`` -> ``photo``, ``photo.png``). Names are compared
    case-insensitively, never equal one of ``reserved`` (e.g. ``results``; a counter is added
    then) and are POSIX relative paths of plain file names.
    """
    inputs = [Path(os.path.abspath(p)) for p in inputs]
    names = [p.stem for p in inputs]
    groups: dict[str, list[int]] = {}
    for i, p in enumerate(inputs):
        groups.setdefault(p.stem.casefold(), []).append(i)
    for members in groups.values():
        if len(members) < 2:
            continue
        depth = _distinguishing_depth([inputs[i].parent for i in members])
        first_in_folder: set[Path] = set()
        for i in members:
            p = inputs[i]
            base = p.stem if p.parent not in first_in_folder else p.name
            first_in_folder.add(p.parent)
            names[i] = str(PurePosixPath(*p.parent.parts[len(p.parent.parts) - depth :], base))
    used = {r.casefold() for r in reserved}
    out = []
    for name in names:
        unique, n = name, 1
        while unique.casefold() in used:
            n += 1
            unique = f"{name}_{n}"
        used.add(unique.casefold())
        out.append(_safe_relative(unique))
    return out


def _distinguishing_depth(parents: list[Path]) -> int:
    """The fewest trailing folder names that tell ``parents`` apart (0 when they are one folder)."""
    distinct = set(parents)
    if len(distinct) < 2:
        return 0
    for k in range(1, max(len(p.parts) for p in distinct) + 1):
        if len({p.parts[len(p.parts) - k :] for p in distinct}) == len(distinct):
            return k
    return max(len(p.parts) for p in distinct)


def _safe_relative(name: str) -> str:
    """``name``'s parts made plain file names (no ``..``, no root, no control characters)."""
    parts = [safe_file_name(part) for part in PurePosixPath(name).parts if part not in ("/", "")]
    return str(PurePosixPath(*parts)) if parts else "_"


def safe_file_name(name: str) -> str:
    """``name`` as one plain file name: characters outside letters, digits and ``._-()+,@= ``
    become ``_``, and names of dots only (``.``, ``..``) become ``_``."""
    clean = _UNSAFE_NAME.sub("_", name).strip()
    return clean if clean.strip(".") else "_"


def dataset_write_target(requested: str, json_path: Path, dataset_root: Path, out_dir: str | os.PathLike | None,
                         suffixes: tuple[str, ...]) -> Path:
    """Where a file a dataset file asks for (``requested``, relative to ``json_path``'s folder)
    may be written: ``out_dir / <its sanitised name>`` when the user named a folder, else the
    requested place if it lies inside ``dataset_root``. Raises a one-line :class:`DataError`
    for anything else: a place outside the dataset folder, an absolute path, a name that is not
    a file name with one of ``suffixes``, or a place that already holds something.
    """
    if any(ord(c) < 32 for c in requested):
        raise DataError(f"{json_path}: imagePath {requested!r} holds control characters: refusing to write imageData there")
    name = requested.replace("\\", "/").rstrip("/").rsplit("/", 1)[-1]
    clean = safe_file_name(name)
    if not name.strip(".") or Path(clean).suffix.lower() not in suffixes:
        raise DataError(f"{json_path}: imagePath {requested!r} is not an image file name "
                        f"({', '.join(suffixes)}): refusing to write imageData there")
    if out_dir is not None:
        target = Path(out_dir) / clean
    else:
        relative = requested.replace("\\", "/")
        target = Path(os.path.normpath(json_path.parent / relative))
        root = os.path.realpath(dataset_root)
        inside = os.path.realpath(target).startswith(root.rstrip(os.sep) + os.sep)
        if os.path.isabs(relative) or not inside or target.name != clean:
            raise DataError(
                f"{json_path}: imagePath {requested!r} points outside the dataset folder {dataset_root} "
                "(or has characters a file name should not): refusing to write imageData there "
                "(pass --images DIR to write the embedded images into DIR)"
            )
    if os.path.lexists(target):
        raise DataError(f"{json_path}: imagePath {requested!r}: {target} exists and is not an image file; "
                        "refusing to write imageData over it")
    return target
