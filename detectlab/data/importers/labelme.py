"""LabelMe JSON folders -> COCO instances dict with polygon masks.

One JSON per image (every ``*.json`` under the folder, sorted): ``shapes`` (``label``,
``points`` ``[[x, y], ...]`` in continuous pixel coordinates, ``shape_type``, ``group_id``),
``imagePath`` (relative to the JSON), ``imageData`` (base64 image or null), ``imageWidth``,
``imageHeight``. ``rectangle`` (two opposite corners), ``polygon`` (a null ``shape_type``
too, as old LabelMe wrote) and ``circle`` (centre, a point on the circle; a 32-gon) become
COCO polygons; shapes with the same ``label`` and ``group_id`` are one instance of several
polygons. ``line``, ``linestrip``, ``point``, ``points`` and ``mask`` shapes are skipped
(counted in the log). The image is ``imagePath`` (or ``images_dir/<its name>``). When it does
not exist and ``imageData`` is embedded, the decoded image is written, by the rule of
:func:`detectlab.outputs.dataset_write_target`: into ``images_dir`` when given, else where
``imagePath`` says only if that is inside the dataset folder and a plain image file name; any
other ``imagePath`` (``../../x.jpg``, an absolute path, ``.``) or bytes that are not an image
are refused in one line. The declared size must match the image's (EXIF orientation applied,
as LabelMe shows it).
"""

from __future__ import annotations

import base64
import binascii
import os
from pathlib import Path

import numpy as np

from detectlab.data.image_header import image_kind
from detectlab.data.importers import (
    IMAGE_SUFFIXES, check_size, coco_dict, ellipse_polygon, image_size, polygon_fields, register_loader,
)
from detectlab.errors import DataError
from detectlab.outputs import dataset_write_target
from detectlab.utils import atomic_path, log, read_json

SKIPPED_SHAPES = ("line", "linestrip", "point", "points", "mask")


def read_labelme(path: str | os.PathLike, classes=None, images_dir: str | os.PathLike | None = None) -> dict:
    """Every LabelMe JSON under folder ``path`` (or the one file ``path``) as a COCO dict."""
    path = Path(path)
    if path.is_dir():
        files = sorted(path.rglob("*.json"))
    elif path.is_file():
        files = [path]
    else:
        raise DataError(f"{path}: no such LabelMe folder or file")
    if not files:
        raise DataError(f"{path}: no LabelMe .json files")
    root = path if path.is_dir() else path.parent
    images, annotations, skipped, extracted = [], [], {}, 0
    for json_path in files:
        doc = _read_json(json_path)
        image_path, wrote = _image_file(doc, json_path, root, images_dir)
        extracted += wrote
        width, height = image_size(image_path, str(json_path))
        declared = (doc.get("imageWidth"), doc.get("imageHeight"))
        if all(isinstance(v, int) for v in declared):
            check_size(declared, (width, height), image_path, str(json_path))
        instances: dict[tuple, dict] = {}
        for index, shape in enumerate(doc["shapes"] or []):
            where = f"{json_path}: shape {index}"
            if not isinstance(shape, dict) or not isinstance(shape.get("label"), str) or not shape["label"].strip():
                raise DataError(f"{where}: expected an object with a non-empty 'label'")
            kind = shape.get("shape_type") or "polygon"
            if kind in SKIPPED_SHAPES:
                skipped[kind] = skipped.get(kind, 0) + 1
                continue
            if not isinstance(kind, str):
                raise DataError(f"{where}: shape_type must be a string, got {kind!r}")
            polygon = _polygon(kind, shape.get("points"), where)
            label = shape["label"].strip()
            group = shape.get("group_id")
            if not isinstance(group, (int, str, type(None))):
                raise DataError(f"{where}: group_id must be a number, a string or null, got {str(group)[:40]}")
            key = (label, group) if group is not None else (label, "shape", index)
            instances.setdefault(key, {"polygons": [], "where": where, "kind": kind})["polygons"].append(polygon)
        for (label, *_), inst in instances.items():
            annotations.append({
                **polygon_fields(inst["polygons"], width, height, inst["where"], inst["kind"]),
                "iscrowd": 0,
                "image_index": len(images),
                "category_name": label,
                "where": inst["where"],
            })
        images.append({"file_name": str(image_path), "width": width, "height": height, "where": str(json_path)})
    if skipped:
        counts = ", ".join(f"{n} {kind}" for kind, n in sorted(skipped.items()))
        log.warning("%s: skipped shapes that are not regions: %s", path, counts)
    if extracted:
        log.info("%s: wrote %d images embedded as imageData (under %s)", path, extracted, images_dir or root)
    return coco_dict(images, annotations, classes, path)


load_labelme = register_loader("labelme", read_labelme)


def _read_json(path: Path) -> dict:
    doc = read_json(path, DataError)
    if not isinstance(doc, dict) or "shapes" not in doc or not isinstance(doc.get("imagePath"), str):
        raise DataError(f"{path}: not a LabelMe file (expected 'shapes' and 'imagePath')")
    if not isinstance(doc["shapes"], (list, type(None))):
        raise DataError(f"{path}: 'shapes' must be a list of shapes, got {type(doc['shapes']).__name__}")
    if not doc["imagePath"].strip():
        raise DataError(f"{path}: 'imagePath' is empty")
    return doc


def _image_file(doc: dict, json_path: Path, root: Path, images_dir) -> tuple[Path, bool]:
    """The image's path, and whether it was written from ``imageData`` (see the module doc)."""
    relative = doc["imagePath"].replace("\\", "/")  # LabelMe on Windows writes backslashes
    image_path = Path(images_dir) / Path(relative).name if images_dir else json_path.parent / relative
    image_path = Path(os.path.abspath(image_path))
    if image_path.is_file() or not doc.get("imageData"):
        return image_path, False  # a missing file is reported by image_size
    if not isinstance(doc["imageData"], str):
        raise DataError(f"{json_path}: imageData must be a base64 string")
    try:
        raw = base64.b64decode(doc["imageData"], validate=True)
    except (binascii.Error, ValueError):
        raise DataError(f"{json_path}: imageData is not valid base64") from None
    if image_kind(raw[:12]) is None:
        raise DataError(f"{json_path}: imageData is not an image (JPEG, PNG, BMP, TIFF or WebP); not written")
    target = dataset_write_target(doc["imagePath"], json_path, root, images_dir, IMAGE_SUFFIXES)
    with atomic_path(target) as tmp:
        Path(tmp).write_bytes(raw)
    return Path(os.path.abspath(target)), True


def _polygon(kind: str, points, where: str) -> np.ndarray:
    """``(P, 2)`` x, y outline of a rectangle, polygon or circle."""
    try:
        pts = np.asarray(points, np.float64)
    except (TypeError, ValueError, OverflowError):
        raise DataError(f"{where}: points must be [[x, y], ...] numbers") from None
    if pts.ndim != 2 or pts.shape[1] != 2:
        raise DataError(f"{where}: points must be [[x, y], ...] numbers")
    if not np.isfinite(pts).all():
        raise DataError(f"{where}: {kind} has a NaN or infinite value")
    if kind == "rectangle":
        if len(pts) != 2:
            raise DataError(f"{where}: rectangle has {len(pts)} points (expected 2 corners)")
        (x0, y0), (x1, y1) = pts.min(axis=0), pts.max(axis=0)
        return np.array([[x0, y0], [x1, y0], [x1, y1], [x0, y1]])
    if kind == "circle":
        if len(pts) != 2:
            raise DataError(f"{where}: circle has {len(pts)} points (expected centre and a point on it)")
        r = float(np.hypot(*(pts[1] - pts[0])))
        return ellipse_polygon(pts[0, 0], pts[0, 1], r, r)
    if kind != "polygon":
        raise DataError(f"{where}: unsupported shape_type {kind!r}")
    if len(pts) < 3:
        raise DataError(f"{where}: polygon has {len(pts)} points (needs at least 3)")
    return pts
