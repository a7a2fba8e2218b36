"""Importers of other annotation formats, each producing a COCO instances dict.

Every format module has ``read_<format>(...) -> dict`` (a COCO instances dict whose
``file_name`` entries are absolute image paths) and a registered
``load_<format>(path, images_dir=None, include_empty_images=True, invalid_boxes="error", ...)``
that hands the dict to :func:`detectlab.data.coco.load_coco`, so every box is validated the
same way as COCO's. Output conventions (COCO's): ``bbox`` is ``[x, y, w, h]`` in pixels with
the box covering ``[x, x + w) x [y, y + h)``; category ids are ``1..K`` in the order of the
``classes`` argument, else sorted by name; image and annotation ids count from 1 in file order.

- :mod:`.voc`: Pascal VOC folders (1-based inclusive pixel corners).
- :mod:`.csv_simple`: ``path,x1,y1,x2,y2,class_name`` lines (keras-frcnn / keras-retinanet).
- :mod:`.via`: VGG Image Annotator JSON (polygons, rectangles, circles, ellipses).
"""

from __future__ import annotations

import math
import os

import cv2

from detectlab.errors import DataError


def image_size(path: str, where: str) -> tuple[int, int]:
    """``(width, height)`` of the image file at ``path``; errors start with ``where``."""
    image = cv2.imread(path, cv2.IMREAD_UNCHANGED)  # stored pixels, like detectlab's reader
    if image is None:
        reason = "image not found" if not os.path.isfile(path) else "cannot decode image (corrupt or not an image)"
        raise DataError(f"{where}: {reason}: {path}")
    return int(image.shape[1]), int(image.shape[0])


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
