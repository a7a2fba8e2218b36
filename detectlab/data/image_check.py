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


def _size_problem(record: ImageRecord, w: int, h: int) -> str | None:
    if (w, h) != (record.width, record.height):
        return f"image is {w}x{h} but the annotations say {record.width}x{record.height}"
    return None


def image_problem(record: ImageRecord) -> str | None:
    """What is wrong with a record's image file, from its header and end only (no decode):
    missing, not an image, truncated, or a size other than the annotations say."""
    if not os.path.isfile(record.path):
        return "file not found"
    cut = truncated(record.path)
    if cut:
        return cut
    size = header_size(record.path)
    return CORRUPT if size is None else _size_problem(record, *size)


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
    bad = []
    for record in dataset.records:
        problem = image_problem(record)
        if problem and policy != "skip":
            raise DataError(f"{record.path}: {problem} (set data.bad_images=skip to leave such images out)")
        if problem:
            bad.append((record, problem))
    if bad:
        shown = "; ".join(f"{r.path}: {why}" for r, why in bad[:10]) + (f"; and {len(bad) - 10} more" if len(bad) > 10 else "")
        log.warning("%s: skipped %d of %d images (data.bad_images=skip): %s", source or dataset.annotation_file,
                    len(bad), len(dataset), shown)
        dropped = {id(r) for r, _ in bad}
        kept = [r for r in dataset.records if id(r) not in dropped]
        if not kept:
            raise DataError(f"{source or dataset.annotation_file}: no usable image left after skipping {len(bad)} bad ones")
        return dataset.subset(kept)
    return dataset
