"""Pascal VOC (VOC2007 / VOC2012 layout) -> COCO instances dict.

A VOC year folder holds ``Annotations/<id>.xml``, ``JPEGImages/`` and
``ImageSets/Main/<split>.txt`` (one image id per line). VOC box corners are 1-based
*inclusive* pixel indices, so ``xmin=1, xmax=10`` covers the first ten pixel columns; in
COCO's 0-based, end-exclusive ``[x, y, w, h]`` that box is
``[xmin - 1, ymin - 1, xmax - xmin + 1, ymax - ymin + 1]``. Each annotation keeps VOC's
``difficult`` flag (0/1); VOC mAP ignores difficult ground truth, COCO evaluation does not.
Objects are numbered from 1 in error messages (``object 3`` is the third ``<object>``).
"""

from __future__ import annotations

import os
import re
import xml.etree.ElementTree as ET
from pathlib import Path

from detectlab.data.coco import load_coco
from detectlab.data.importers import coco_dict, image_size, number
from detectlab.data.records import DetectionDataset
from detectlab.errors import DataError
from detectlab.registry import DATASET_FORMATS

SPLITS = ("train", "val", "trainval", "test")
CORNERS = ("xmin", "ymin", "xmax", "ymax")


def read_voc(
    root: str | os.PathLike,
    split: str | None = None,
    classes=None,
    images_dir: str | os.PathLike | None = None,
) -> dict:
    """The images of ``split`` (all ``Annotations/*.xml`` when None) as a COCO dict.

    Images are ``JPEGImages/<filename>`` (or ``images_dir/<filename>``); ``<id>.jpg`` when
    the XML has no ``filename``.
    """
    root = Path(root)
    annotations_dir = root / "Annotations"
    if not annotations_dir.is_dir():
        raise DataError(f"{root}: not a VOC folder (no Annotations/ folder)")
    image_root = Path(images_dir) if images_dir is not None else root / "JPEGImages"
    if images_dir is not None and not image_root.is_dir():
        raise DataError(f"{image_root}: image folder not found")
    images, annotations = [], []
    for xml_path in _annotation_files(root, split):
        image, objects = _parse(xml_path, image_root)
        for obj in objects:
            obj["image_index"] = len(images)
        images.append(image)
        annotations.extend(objects)
    return coco_dict(images, annotations, classes, root)


@DATASET_FORMATS.register("voc")
def load_voc(
    path: str | os.PathLike,
    images_dir: str | os.PathLike | None = None,
    include_empty_images: bool = True,
    invalid_boxes: str = "error",
    *,
    split: str | None = None,
    classes=None,
) -> DetectionDataset:
    """A VOC year folder as a :class:`DetectionDataset` (boxes validated by ``load_coco``)."""
    data = read_voc(path, split, classes, images_dir)
    return load_coco(data, None, include_empty_images, invalid_boxes, source=str(path))


def _annotation_files(root: Path, split: str | None) -> list[Path]:
    if split is None:
        return sorted((root / "Annotations").glob("*.xml"))
    if split not in SPLITS:
        raise DataError(f"{root}: unknown VOC split '{split}' (expected one of: {', '.join(SPLITS)})")
    split_file = root / "ImageSets" / "Main" / f"{split}.txt"
    if not split_file.is_file():
        raise DataError(f"{split_file}: split file not found")
    files = []
    for lineno, line in enumerate(split_file.read_text().splitlines(), 1):
        if not line.strip():
            continue
        image_id = line.split()[0]
        xml_path = root / "Annotations" / f"{image_id}.xml"
        if not xml_path.is_file():
            raise DataError(f"{split_file}:{lineno}: image '{image_id}' has no annotation file {xml_path}")
        files.append(xml_path)
    return files


def _parse(xml_path: Path, image_root: Path) -> tuple[dict, list[dict]]:
    try:
        tree = ET.parse(xml_path)
    except ET.ParseError as exc:
        line, column = exc.position
        reason = re.sub(r": line \d+, column \d+$", "", str(exc))
        raise DataError(f"{xml_path}: line {line} column {column + 1}: invalid XML ({reason})") from None
    node = tree.getroot()
    filename = (node.findtext("filename") or "").strip() or f"{xml_path.stem}.jpg"
    file_name = os.path.abspath(image_root / filename)
    width, height = (int(_number(node, f"size/{key}", str(xml_path), default=0)) for key in ("width", "height"))
    if not width or not height:  # some tools write 0 or leave the size out: measure the image
        width, height = image_size(file_name, str(xml_path))
    objects = []
    for n, obj in enumerate(node.findall("object"), 1):
        where = f"{xml_path}: object {n}"
        name = (obj.findtext("name") or "").strip()
        if not name:
            raise DataError(f"{where}: missing name")
        x1, y1, x2, y2 = (_number(obj, f"bndbox/{key}", where) for key in CORNERS)
        difficult = _number(obj, "difficult", where, default=0.0)
        objects.append({
            "bbox": [x1 - 1, y1 - 1, x2 - x1 + 1, y2 - y1 + 1],
            "area": (x2 - x1 + 1) * (y2 - y1 + 1),
            "iscrowd": 0,
            "difficult": int(difficult != 0),
            "category_name": name,
            "where": where,
        })
    return {"file_name": file_name, "width": width, "height": height}, objects


def _number(node, field: str, where: str, default: float | None = None) -> int | float:
    """The number in ``node``'s child ``field``."""
    text = node.findtext(field)
    if text is None or not text.strip():
        if default is not None:
            return default
        raise DataError(f"{where}: missing {field}")
    return number(text.strip(), field, where)
