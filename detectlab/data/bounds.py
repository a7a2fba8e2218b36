"""Coordinates checked against their image before anything is rasterised or stored.

The same holds for masks stored as COCO RLE (:func:`check_rle`): pycocotools decodes them
without checking that the run lengths fit the image, so a count of 1e9 in a 64x48 mask writes
past its buffer or runs for hours.

One rule for every importer (through :func:`detectlab.data.importers.polygon_fields` and
:func:`detectlab.data.importers.box_fields`), :func:`detectlab.data.coco.load_coco` and
``evaluate.py --gt``: each coordinate of a box or polygon must be a finite number at most
:data:`MARGIN` image widths (x) or heights (y) outside its image. pycocotools rasterises a
polygon edge by edge at pixel steps, so one point at 1e8 px takes gigabytes or crashes it:
such shapes are refused with the file and shape named. The importers clip shapes within the
margin to the image (``[0, W] x [0, H]``, continuous pixel coordinates, x right, y down);
``load_coco`` keeps a COCO file's coordinates and clips its boxes when it reads them.
"""

from __future__ import annotations

import numpy as np

from detectlab.errors import DataError

MARGIN = 1.0  # in image sides: x may lie in [-W, 2W], y in [-H, 2H]
MAX_IMAGE_PIXELS = 1 << 30  # OpenCV's default decoding limit (CV_IO_MAX_IMAGE_PIXELS)


def check_image_size(width, height, where: str) -> tuple[int, int]:
    """``(width, height)`` as ints, checked: whole numbers >= 1, at most :data:`MAX_IMAGE_PIXELS`
    pixels (a header or JSON claiming more would make every later step allocate that much)."""
    if not all(_whole(v) and v >= 1 for v in (width, height)):
        raise DataError(f"{where}: width and height must be whole numbers >= 1, got {width!r} x {height!r}")
    width, height = int(width), int(height)
    if width * height > MAX_IMAGE_PIXELS:
        raise DataError(f"{where}: {width}x{height} is more than {MAX_IMAGE_PIXELS:,} pixels (OpenCV's decoding limit)")
    return width, height


def check_points(points, width: int, height: int, where: str, what: str = "polygon") -> np.ndarray:
    """``points`` as a ``(P, 2) float64`` x, y array, checked: finite, within the margin.

    Raises a one-line :class:`DataError` starting with ``where`` and naming ``what``.
    """
    try:
        pts = np.asarray(points, np.float64).reshape(-1, 2)
    except (TypeError, ValueError):
        raise DataError(f"{where}: {what} coordinates must be numbers") from None
    finite = np.isfinite(pts).all(axis=1)
    if not finite.all():
        raise DataError(f"{where}: {what} has a NaN or infinite value")
    size = np.array([width, height], np.float64)
    far = ((pts < -MARGIN * size) | (pts > (1 + MARGIN) * size)).any(axis=1)
    if far.any():
        x, y = pts[int(np.argmax(far))]
        raise DataError(
            f"{where}: {what} point ({x:.6g}, {y:.6g}) lies far outside the {width}x{height} image "
            f"(more than {MARGIN:g} image width/height away)"
        )
    return pts


def _whole(value) -> bool:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return False
    return isinstance(value, int) or (value == value and abs(value) != float("inf") and value.is_integer())


def clip_polygon(points: np.ndarray, width: float, height: float) -> np.ndarray:
    """The part of polygon ``points (P, 2)`` x, y inside ``[0, width] x [0, height]``
    (Sutherland-Hodgman against the four sides; ``(0, 2)`` when nothing is inside)."""
    pts = np.asarray(points, np.float64)
    for axis, limit, keep_below in ((0, 0.0, False), (0, float(width), True), (1, 0.0, False), (1, float(height), True)):
        if len(pts) == 0:
            break
        pts = _clip_half_plane(pts, axis, limit, keep_below)
    return pts


def _clip_half_plane(pts: np.ndarray, axis: int, limit: float, keep_below: bool) -> np.ndarray:
    """Polygon ``pts`` cut to ``pts[:, axis] <= limit`` (``keep_below``) or ``>= limit``."""
    value = pts[:, axis] - limit
    inside = value <= 0 if keep_below else value >= 0
    if inside.all():
        return pts
    prev, prev_value, prev_inside = np.roll(pts, 1, axis=0), np.roll(value, 1), np.roll(inside, 1)
    crossing = inside != prev_inside
    t = np.divide(prev_value, prev_value - value, out=np.zeros_like(value), where=crossing)
    cut = prev + t[:, None] * (pts - prev)
    cut[:, axis] = limit
    # per point: the crossing of the edge that ends here (if any), then the point (if inside)
    candidates = np.stack([cut, pts], axis=1).reshape(-1, 2)
    return candidates[np.stack([crossing, inside], axis=1).reshape(-1)]


def clip_box(x0: float, y0: float, x1: float, y1: float, width: float, height: float) -> tuple[float, ...]:
    """Corners clipped to ``[0, width] x [0, height]``; the corners as given when nothing of
    the box is inside (the caller's check then names the box as lying outside)."""
    cx0, cy0, cx1, cy1 = max(x0, 0.0), max(y0, 0.0), min(x1, float(width)), min(y1, float(height))
    return (cx0, cy0, cx1, cy1) if cx1 > cx0 and cy1 > cy0 else (x0, y0, x1, y1)


def check_rle(rle, height: int, width: int, where: str, compressed_only: bool = False) -> None:
    """A COCO RLE ``{"size": [h, w], "counts": ...}`` checked against its ``height x width``
    image: the size is the image's, and ``counts`` (a list of whole numbers, or pycocotools'
    compressed string; only the string when ``compressed_only``) are run lengths >= 0 adding up
    to ``h * w``. Raises a one-line :class:`DataError` starting with ``where`` (the field's name)."""
    if not isinstance(rle, dict) or not {"size", "counts"} <= set(rle):
        raise DataError(f"{where} must be RLE {{size, counts}} (as pycocotools writes it)")
    size, counts, pixels = rle["size"], rle["counts"], height * width
    kind = "a compressed RLE (counts a string)" if compressed_only else "an RLE"
    if size != [height, width] or not isinstance(counts, str if compressed_only else (str, list)):
        raise DataError(f"{where} must be {kind} of the image's size [{height}, {width}], got size {size!r} "
                        f"and counts of type {type(counts).__name__}")
    if isinstance(counts, list):
        runs = counts if all(_whole(c) and c >= 0 for c in counts) else None
    else:
        runs = rle_counts(counts)
    if runs is None or sum(int(c) for c in runs) != pixels:
        what = "counts" if isinstance(counts, list) else "compressed counts"
        raise DataError(f"{where} RLE {what} must be whole run lengths >= 0 adding up to the image's {pixels} pixels")


def rle_counts(counts: str) -> np.ndarray | None:
    """The run lengths of pycocotools' compressed RLE string (``(M,) int64``), or None when it
    is not one: characters outside ``0``..``o``, a number cut at the end, more than 7
    characters per number, or a run that would not fit pycocotools' 32-bit unsigned counts.

    The format (pycocotools ``rleToString``): each number in 5-bit groups, low bits first, one
    character ``48 + group`` each, bit 0x20 set while more follow, bit 0x10 of the last its sign;
    from the fourth number on, each is the difference to the number two places before.
    """
    if not counts.isascii():
        return None
    c = np.frombuffer(counts.encode("ascii"), np.uint8).astype(np.int64) - 48
    if len(c) == 0:
        return np.zeros(0, np.int64)
    if (c < 0).any() or (c > 63).any():
        return None
    last = (c & 0x20) == 0  # the last character of each number
    if not last[-1]:
        return None
    starts = np.flatnonzero(np.r_[True, last[:-1]])
    position = np.arange(len(c)) - np.repeat(starts, np.diff(np.r_[starts, len(c)]))
    if position.max() >= 7:
        return None
    values = np.add.reduceat((c & 0x1F) << (5 * position), starts)
    negative = (c[last] & 0x10) != 0
    values = values - np.where(negative, np.left_shift(1, 5 * (position[last] + 1)), 0)
    runs = values.copy()
    runs[1::2] = np.cumsum(values[1::2])  # odd places: each the previous odd one plus its difference
    runs[2::2] = np.cumsum(values[2::2])  # even places from the third number on, likewise
    if (runs < 0).any() or (runs >= 1 << 32).any():
        return None
    return runs
