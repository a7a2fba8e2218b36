"""Coordinates checked against their image before anything is rasterised or stored.

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
