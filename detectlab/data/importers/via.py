"""VGG Image Annotator (VIA 1.x / 2.x) JSON -> COCO instances dict with polygon masks.

The file is an object keyed by ``"<filename><size>"`` (or a VIA 2 project whose
``_via_img_metadata`` holds that object), as in matterport Mask R-CNN's balloon sample.
Each value has ``filename`` and ``regions`` (a list, or an object keyed ``"0"``, ``"1"``, ...);
a region's ``shape_attributes`` is a ``polygon`` (``all_points_x``/``all_points_y``), a
``rect`` (``x, y, width, height``), a ``circle`` (``cx, cy, r``) or an ``ellipse``
(``cx, cy, rx, ry``, optional ``theta`` in radians). VIA coordinates are continuous pixel
coordinates (origin at the top-left corner of the image), as COCO's: every region becomes a
COCO polygon ``segmentation`` (circles and ellipses as 32-gons), ``bbox`` is the polygon's
extent and ``area`` the pixel area of its mask as pycocotools computes it. The class is
``default_class`` for a region without attributes (when it is not given: ``"object"``, with one
warning naming the fallback and the count), else the region attribute ``class_attribute`` (default: the first non-empty
string attribute). Images are next to the JSON (or in ``images_dir``); their sizes are read from
the files. Errors name the file, the image key and the region (numbered from 0, as VIA's).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from detectlab.data.importers import coco_dict, ellipse_polygon, image_size, polygon_fields, register_loader
from detectlab.errors import DataError
from detectlab.utils import log, read_json

FALLBACK_CLASS = "object"
SHAPE_FIELDS = {
    "polygon": ("all_points_x", "all_points_y"),
    "rect": ("x", "y", "width", "height"),
    "circle": ("cx", "cy", "r"),
    "ellipse": ("cx", "cy", "rx", "ry"),
}


def read_via(
    path: str | os.PathLike,
    classes=None,
    images_dir: str | os.PathLike | None = None,
    class_attribute: str | None = None,
    default_class: str | None = None,
) -> dict:
    """The images and regions of a VIA JSON file as a COCO dict with polygon segmentations."""
    path = Path(path)
    entries = _read_json(path)
    image_root = Path(images_dir) if images_dir is not None else path.parent
    if not image_root.is_dir():
        raise DataError(f"{image_root}: image folder not found")
    images, annotations, fallbacks = [], [], 0
    for key, entry in entries.items():
        where = f"{path}: {key}"
        if not isinstance(entry, dict) or not isinstance(entry.get("filename"), str) or not entry["filename"]:
            raise DataError(f"{where}: missing 'filename'")
        regions = entry.get("regions") or []
        if isinstance(regions, dict):
            regions = list(regions.items())
        elif isinstance(regions, list):
            regions = list(enumerate(regions))
        else:
            raise DataError(f"{where}: 'regions' must be a list or an object")
        file_name = os.path.abspath(image_root / entry["filename"])
        width, height = image_size(file_name, where)
        for index, region in regions:
            region_where = f"{where} region {index}"
            if not isinstance(region, dict):
                raise DataError(f"{region_where}: expected an object with shape_attributes")
            polygon, kind = _polygon(region.get("shape_attributes"), region_where)
            name = _class_name(region.get("region_attributes"), class_attribute, default_class, region_where)
            fallbacks += name is None
            annotations.append({
                **polygon_fields([polygon], width, height, region_where, kind),
                "iscrowd": 0,
                "image_index": len(images),
                "category_name": name or FALLBACK_CLASS,
                "where": region_where,
            })
        images.append({"file_name": file_name, "width": width, "height": height, "where": where})
    if fallbacks:
        log.warning("%s: %d regions without a class became '%s' (pass --default-class NAME to choose)",
                    path, fallbacks, FALLBACK_CLASS)
    return coco_dict(images, annotations, classes, path)


load_via = register_loader("via", read_via)


def _read_json(path: Path) -> dict:
    if not path.is_file():
        raise DataError(f"{path}: annotation file not found")
    data = read_json(path, DataError)
    if isinstance(data, dict) and isinstance(data.get("_via_img_metadata"), dict):
        data = data["_via_img_metadata"]  # a VIA 2 project file
    if not isinstance(data, dict):
        raise DataError(f"{path}: expected a VIA object keyed by image (\"<filename><size>\": {{...}})")
    return data


def _polygon(shape, where: str) -> tuple[np.ndarray, str]:
    """The region's outline as ``(P, 2) float64`` x, y points, and the shape's name."""
    if not isinstance(shape, dict):
        raise DataError(f"{where}: missing shape_attributes")
    name = shape.get("name")
    if not isinstance(name, str) or name not in SHAPE_FIELDS:
        raise DataError(f"{where}: unsupported shape {name!r} (expected one of: {', '.join(SHAPE_FIELDS)})")
    values = {}
    for field in SHAPE_FIELDS[name] + (("theta",) if name == "ellipse" else ()):
        try:
            values[field] = np.asarray(shape.get(field, 0) if field == "theta" else shape[field], np.float64)
        except KeyError:
            raise DataError(f"{where}: {name} without '{field}'") from None
        except (TypeError, ValueError, OverflowError):
            raise DataError(f"{where}: {name} '{field}' must be numeric") from None
        if not np.isfinite(values[field]).all():
            raise DataError(f"{where}: {name} '{field}' must be finite")
    if name == "polygon":
        xs, ys = values["all_points_x"], values["all_points_y"]
        if xs.ndim != 1 or xs.shape != ys.shape:
            raise DataError(f"{where}: polygon all_points_x and all_points_y differ in length")
        if len(xs) < 3:
            raise DataError(f"{where}: polygon has {len(xs)} points (needs at least 3)")
        return np.stack([xs, ys], axis=1), name
    if any(v.ndim for v in values.values()):
        raise DataError(f"{where}: {name} fields must be single numbers")
    if name == "rect":
        x, y, w, h = (values[k] for k in SHAPE_FIELDS["rect"])
        return np.array([[x, y], [x + w, y], [x + w, y + h], [x, y + h]]), name
    cx, cy = values["cx"], values["cy"]
    rx, ry = (values["r"], values["r"]) if name == "circle" else (values["rx"], values["ry"])
    return ellipse_polygon(cx, cy, rx, ry, float(values.get("theta", 0.0))), name


def _class_name(attributes, class_attribute: str | None, default_class: str | None, where: str) -> str | None:
    """The region's class; None for a region without attributes and no ``default_class``."""
    if attributes is not None and not isinstance(attributes, dict):
        raise DataError(f"{where}: region_attributes must be an object")
    if not attributes:
        return default_class
    if class_attribute is not None:
        value = attributes.get(class_attribute)
        if not isinstance(value, str) or not value.strip():
            raise DataError(f"{where}: region attribute '{class_attribute}' is missing or not a non-empty string")
        return value.strip()
    for value in attributes.values():
        if isinstance(value, str) and value.strip():
            return value.strip()
    raise DataError(
        f"{where}: no region attribute holds a class name (attributes: {', '.join(attributes)}; "
        "pass class_attribute)"
    )
