"""CVAT for images 1.1 XML -> COCO instances dict.

``<annotations>`` holds ``<meta>`` (the task's or project's ``<labels>``, which fix the
category order unless ``classes`` is given) and one ``<image id name width height>`` per
image with ``<box label xtl ytl xbr ybr occluded [rotation]>``, ``<polygon label
points="x1,y1;x2,y2;..." occluded>`` and ``<ellipse label cx cy rx ry>``, in continuous pixel
coordinates. Boxes become COCO boxes (rotated ones polygons), polygons and ellipses COCO
polygons; a polygon drawn as a hole is its own shape in CVAT and stays its own instance.
Each annotation keeps ``attributes``: ``occluded`` (bool) and every ``<attribute name>``
child (text). ``polyline``, ``points``, ``mask`` and ``tag`` are skipped, and so are ``<track>``
elements (CVAT for video; counted in the log with their shapes). An image listed twice is an
error. Images are ``images_dir/<name>``, else next to the XML, else in ``images/`` beside it.
"""

from __future__ import annotations

import math
import os
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np

from detectlab.data.importers import (
    box_fields, check_size, coco_dict, ellipse_polygon, image_size, number, parse_xml, polygon_fields, register_loader,
)
from detectlab.errors import DataError
from detectlab.utils import log

SHAPES = ("box", "polygon", "ellipse")
SKIPPED = ("polyline", "points", "mask", "tag", "skeleton", "cuboid")


def read_cvat(path: str | os.PathLike, classes=None, images_dir: str | os.PathLike | None = None) -> dict:
    """A CVAT for images 1.1 XML file as a COCO dict."""
    path = Path(path)
    root = parse_xml(path)
    if root.tag != "annotations":
        raise DataError(f"{path}: not a CVAT for images XML (root is <{root.tag}>, expected <annotations>)")
    if classes is None:
        meta = [n.strip() for n in (e.findtext("name") or "" for e in root.iter("label")) if n.strip()]
        classes = list(dict.fromkeys(meta)) or None
    images, annotations, skipped = [], [], {}
    tracks = root.findall("track")
    if tracks:
        skipped[f"track (CVAT for video: {sum(len(t) for t in tracks)} shapes)"] = len(tracks)
    for node in root.findall("image"):
        name = node.get("name")
        where = f"{path}: image {node.get('id', '?')} ({name})"
        if not name:
            raise DataError(f"{where}: missing name")
        file_name = _image_path(path, name, images_dir)
        width, height = image_size(file_name, where)
        if node.get("width") and node.get("height"):
            declared = (number(node.get("width"), "width", where), number(node.get("height"), "height", where))
            check_size(declared, (width, height), file_name, where)
        for index, shape in enumerate(node):
            if shape.tag not in SHAPES:
                skipped[shape.tag] = skipped.get(shape.tag, 0) + 1
                continue
            shape_where = f"{where}: {shape.tag} {index}"
            label = (shape.get("label") or "").strip()
            if not label:
                raise DataError(f"{shape_where}: missing label")
            attributes = {"occluded": shape.get("occluded", "0") == "1"}
            attributes.update({a.get("name"): (a.text or "") for a in shape.findall("attribute")})
            annotations.append({
                **_geometry(shape, width, height, shape_where),
                "iscrowd": 0,
                "attributes": attributes,
                "image_index": len(images),
                "category_name": label,
                "where": shape_where,
            })
        images.append({"file_name": file_name, "width": width, "height": height, "where": where})
    if not images:
        raise DataError(f"{path}: no <image> elements (a CVAT for video file? export 'CVAT for images 1.1')")
    if skipped:
        counts = ", ".join(f"{n} {kind}" for kind, n in sorted(skipped.items()))
        log.warning("%s: skipped shapes that are not regions: %s", path, counts)
    return coco_dict(images, annotations, classes, path)


load_cvat = register_loader("cvat", read_cvat)


def _image_path(xml_path: Path, name: str, images_dir) -> str:
    candidates = [Path(images_dir) / name] if images_dir else [xml_path.parent / name, xml_path.parent / "images" / name]
    for candidate in candidates:
        if candidate.is_file():
            return os.path.abspath(candidate)
    return os.path.abspath(candidates[0])  # image_size reports it missing


def _geometry(shape: ET.Element, width: int, height: int, where: str) -> dict:
    """COCO ``bbox``/``area`` (and ``segmentation`` for polygons) of a CVAT shape."""
    def value(key):
        if shape.get(key) is None:
            raise DataError(f"{where}: missing {key}")
        return float(number(shape.get(key), key, where))

    if shape.tag == "polygon":
        try:
            points = np.array([[float(v) for v in p.split(",")] for p in shape.get("points", "").split(";")])
        except (ValueError, OverflowError):
            raise DataError(f"{where}: points must be 'x1,y1;x2,y2;...'") from None
        if points.ndim != 2 or points.shape[1] != 2 or len(points) < 3:
            raise DataError(f"{where}: a polygon needs at least 3 'x,y' points")
        return polygon_fields([points], width, height, where)
    rotation = float(number(shape.get("rotation") or 0, "rotation", where))
    if shape.tag == "ellipse":
        outline = ellipse_polygon(value("cx"), value("cy"), value("rx"), value("ry"), math.radians(rotation))
        return polygon_fields([outline], width, height, where, "ellipse")
    x0, y0, x1, y1 = (value(k) for k in ("xtl", "ytl", "xbr", "ybr"))
    if x1 <= x0 or y1 <= y0:
        raise DataError(f"{where}: box has {'xbr <= xtl' if x1 <= x0 else 'ybr <= ytl'}")
    if rotation:  # rotated about its centre: a polygon
        corners = np.array([[x0, y0], [x1, y0], [x1, y1], [x0, y1]]) - [(x0 + x1) / 2, (y0 + y1) / 2]
        c, s = math.cos(math.radians(rotation)), math.sin(math.radians(rotation))
        return polygon_fields([corners @ np.array([[c, s], [-s, c]]) + [(x0 + x1) / 2, (y0 + y1) / 2]], width, height,
                              where, "rotated box")
    return box_fields(x0, y0, x1, y1, width, height, where)
