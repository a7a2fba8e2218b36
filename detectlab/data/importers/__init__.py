"""Importers of other annotation formats, each producing a COCO instances dict.

Every format module has ``read_<format>(path, ..., classes=None, images_dir=None) -> dict`` (a
COCO instances dict whose ``file_name`` entries are absolute image paths) and a registered
``load_<format>(path, images_dir=None, include_empty_images=True, invalid_boxes="error",
**options)`` (made by :func:`register_loader`) that hands the dict to
:func:`detectlab.data.coco.load_coco`, so every box is validated the same way as COCO's.
Output conventions (COCO's): ``bbox`` is ``[x, y, w, h]`` in pixels with
the box covering ``[x, x + w) x [y, y + h)``; category ids are ``1..K`` in the order of the
``classes`` argument, else sorted by name; image and annotation ids count from 1 in file order.

- :mod:`.voc`: Pascal VOC folders (1-based inclusive pixel corners).
- :mod:`.csv_simple`: ``path,x1,y1,x2,y2,class_name`` lines (keras-frcnn / keras-retinanet).
- :mod:`.via`: VGG Image Annotator JSON (polygons, rectangles, circles, ellipses).
- :mod:`.yolo`: YOLO txt (Darknet / Ultralytics ``data.yaml``), boxes and segments; also writes it.
- :mod:`.labelme`: LabelMe JSON folders (rectangles, polygons, circles).
- :mod:`.cvat`: CVAT for images 1.1 XML (boxes, polygons, attributes).

Image sizes come from the file headers (:mod:`detectlab.data.image_header`), EXIF
orientation applied. Polygon annotations get ``bbox`` = the polygon's extent and ``area`` as
pycocotools computes it (pixels of the rasterised mask), the COCO convention.
"""

from __future__ import annotations

import math
import re
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np

from detectlab.data.image_header import image_size  # noqa: F401  (re-exported for the importers)
from detectlab.errors import DataError
from detectlab.registry import DATASET_FORMATS

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")
ELLIPSE_POINTS = 32


def polygon_fields(polygons: list[np.ndarray], width: int, height: int) -> dict:
    """COCO ``segmentation``, ``bbox`` (extent) and ``area`` of an instance's polygons.

    ``polygons``: ``(P, 2)`` x, y arrays in continuous pixel coordinates (each P >= 3), rounded
    to 2 decimals; ``area`` is pycocotools' ``maskUtils.area`` of the merged RLE.
    """
    from pycocotools import mask as mask_utils

    polygons = [np.round(np.asarray(p, np.float64), 2) for p in polygons]
    points = np.concatenate(polygons)
    x0, y0 = points.min(axis=0)
    x1, y1 = points.max(axis=0)
    segmentation = [p.reshape(-1).tolist() for p in polygons]
    rle = mask_utils.merge(mask_utils.frPyObjects(segmentation, int(height), int(width)))
    return {
        "segmentation": segmentation,
        "bbox": [round(float(v), 2) for v in (x0, y0, x1 - x0, y1 - y0)],
        "area": float(mask_utils.area(rle)),
    }


def ellipse_polygon(cx: float, cy: float, rx: float, ry: float, theta: float = 0.0) -> np.ndarray:
    """``(ELLIPSE_POINTS, 2)`` x, y outline of an ellipse rotated by ``theta`` radians."""
    t = np.linspace(0, 2 * np.pi, ELLIPSE_POINTS, endpoint=False)
    ex, ey = rx * np.cos(t), ry * np.sin(t)
    c, s = np.cos(theta), np.sin(theta)
    return np.stack([cx + c * ex - s * ey, cy + s * ex + c * ey], axis=1)


def check_size(declared: tuple[int, int], actual: tuple[int, int], path, where: str) -> None:
    """Error when an annotation's ``(width, height)`` differs from the (oriented) image's."""
    if tuple(int(v) for v in declared) != tuple(actual):
        raise DataError(
            f"{where}: the annotation says {declared[0]}x{declared[1]} but the image {path} is "
            f"{actual[0]}x{actual[1]} (EXIF orientation applied)"
        )


def number(text: str, what: str, where: str) -> int | float:
    """``text`` as a finite number (an int when integral, so the JSON stays exact)."""
    try:
        value = float(text)
        if not math.isfinite(value):
            raise ValueError
    except ValueError:
        raise DataError(f"{where}: {what} {text!r} is not a number") from None
    return int(value) if value.is_integer() else value


def parse_classes(classes, source) -> list[str] | None:
    """A ``classes`` argument (list or ``"a,b,c"``) -> list of names, checked for duplicates."""
    if classes is None:
        return None
    names = [c.strip() for c in classes.split(",")] if isinstance(classes, str) else [str(c) for c in classes]
    if not names or not all(names):
        raise DataError(f"{source}: classes must be non-empty names, got {classes!r}")
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise DataError(f"{source}: class '{duplicates[0]}' is listed twice in classes")
    return names


def coco_dict(images: list[dict], annotations: list[dict], classes, source) -> dict:
    """Assemble the COCO dict, numbering images, annotations and categories from 1.

    ``images``: ``{file_name, width, height}`` in order; ``annotations``: COCO fields plus
    ``image_index`` (into ``images``), ``category_name`` and ``where`` (for error messages).
    """
    names = parse_classes(classes, source)
    if names is None:
        names = sorted({a["category_name"] for a in annotations})
    category_ids = {name: k for k, name in enumerate(names, 1)}
    out_annotations = []
    for ann_id, ann in enumerate(annotations, 1):
        ann = dict(ann)
        name, where = ann.pop("category_name"), ann.pop("where")
        if name not in category_ids:
            raise DataError(f"{where}: class '{name}' is not in classes ({', '.join(names)})")
        out_annotations.append(
            {"id": ann_id, "image_id": ann.pop("image_index") + 1, "category_id": category_ids[name], **ann}
        )
    return {
        "images": [{"id": k, **img} for k, img in enumerate(images, 1)],
        "annotations": out_annotations,
        "categories": [{"id": k, "name": name} for name, k in category_ids.items()],
    }


def parse_xml(path: Path) -> ET.Element:
    """The root element of an XML file; errors name the line and column."""
    if not path.is_file():
        raise DataError(f"{path}: annotation file not found")
    try:
        return ET.parse(path).getroot()
    except ET.ParseError as exc:
        line, column = exc.position
        reason = re.sub(r": line \d+, column \d+$", "", str(exc))
        raise DataError(f"{path}: line {line} column {column + 1}: invalid XML ({reason})") from None


def register_loader(name: str, read):
    """Register and return ``load_<name>``: ``read(path, images_dir=..., **options)`` handed to
    ``load_coco`` (``options``: the reader's keywords, e.g. ``classes``, ``split``)."""
    from detectlab.data.coco import load_coco

    def load(path, images_dir=None, include_empty_images: bool = True, invalid_boxes: str = "error", **options):
        data = read(path, images_dir=images_dir, **options)
        return load_coco(data, None, include_empty_images, invalid_boxes, source=str(path))

    load.__name__ = load.__qualname__ = f"load_{name}"
    load.__doc__ = f"``{read.__name__}(path, ...)`` as a validated :class:`DetectionDataset`."
    load.read = read  # the COCO dict with absolute image paths (datasets/convert.py)
    return DATASET_FORMATS.register(name, load)


def import_all_importers() -> None:
    """Import every module of this package, so each registers its format: a new format is one
    importer file here."""
    import importlib
    import pkgutil

    for module in pkgutil.iter_modules(__path__):
        importlib.import_module(f"{__name__}.{module.name}")
