"""Every image of a dataset checked before training, from its header and end only.

A corrupt validation image would otherwise be found when a batch reads it, after a whole
trained epoch; a truncated JPEG would decode half grey with only libjpeg's warning (no
file name). :func:`check_images` runs when a split is loaded (``data.bad_images``).
"""

from __future__ import annotations

import os

from detectlab.data.image_header import image_size, truncated
from detectlab.data.records import DetectionDataset, ImageRecord
from detectlab.errors import DataError
from detectlab.utils import log

CORRUPT = "cannot decode (corrupt or not an image)"
BAD_IMAGES_HINT = "set data.bad_images=skip to leave such images out"


def _size_problem(record: ImageRecord, w: int, h: int) -> str | None:
    if (w, h) != (record.width, record.height):
        return f"image is {w}x{h} but the annotations say {record.width}x{record.height}"
    return None


def file_problem(path: str) -> str | None:
    """What is wrong with an image file, from its header and end only (no decode): missing,
    truncated or not an image."""
    return _checked(path)[0]


def image_problem(record: ImageRecord) -> str | None:
    """:func:`file_problem` of a record's image, or a size other than the annotations say."""
    problem, size = _checked(record.path)
    return problem or _size_problem(record, *size)


def _checked(path: str) -> tuple[str | None, tuple[int, int] | None]:
    if not os.path.isfile(path):
        return "file not found", None
    cut = truncated(path)
    if cut:
        return cut, None
    size = header_size(path)
    return (CORRUPT if size is None else None), size


def header_size(path: str) -> tuple[int, int] | None:
    """``(width, height)`` as the loader uses the image (EXIF orientation applied, see
    :mod:`detectlab.data.image_header`), from the header where the format has one; None
    when it is not an image."""
    try:
        return image_size(path)
    except DataError:
        return None


def check_images(dataset: DetectionDataset, policy: str = "error", source: str = "") -> DetectionDataset:
    """Check every image of ``dataset`` up front (:func:`image_problem`).

    ``policy="error"`` stops at the first bad image with its path and reason;
    ``"skip"`` drops the bad images and logs how many, and which.
    """
    problems = [(r, image_problem(r)) for r in dataset.records]
    if not _bad_ones([(r.path, why) for r, why in problems], policy, source or dataset.annotation_file):
        return dataset
    return dataset.subset([r for r, why in problems if not why])


def check_image_files(paths: list, policy: str = "error", source: str = "--images") -> list:
    """The ``paths`` whose files are images (:func:`file_problem`), by ``policy`` as
    :func:`check_images` (the images ``predict.py`` is given)."""
    problems = [(p, file_problem(str(p))) for p in paths]
    _bad_ones(problems, policy, source)
    return [p for p, why in problems if not why]


def _bad_ones(problems: list[tuple], policy: str, source: str) -> list:
    """The paths with a problem among ``(path, problem or None)``: the first is a ``DataError``
    unless ``policy`` is ``"skip"``; skipped ones are counted and named in one log line, and
    nothing left is a ``DataError``."""
    bad = [(path, why) for path, why in problems if why]
    if bad and policy != "skip":
        path, why = bad[0]
        raise DataError(f"{path}: {why} ({BAD_IMAGES_HINT})")
    if bad:
        shown = "; ".join(f"{p}: {why}" for p, why in bad[:10]) + (f"; and {len(bad) - 10} more" if len(bad) > 10 else "")
        log.warning("%s: skipped %d of %d images (data.bad_images=skip): %s", source, len(bad), len(problems), shown)
    if problems and len(bad) == len(problems):
        raise DataError(f"{source}: no usable image left after skipping {len(bad)} bad ones")
    return [p for p, _ in bad]
