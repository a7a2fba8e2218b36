"""COCO JSON -> :class:`DetectionDataset`, validating every annotation on the way in.

Category ids may be any integers (COCO's run 1..90 with gaps); they are mapped to
contiguous class indices in ascending id order and mapped back when results are written.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

import numpy as np

from detectlab.data.records import DetectionDataset, ImageRecord
from detectlab.errors import DataError
from detectlab.registry import DATASET_FORMATS
from detectlab.utils import log


@DATASET_FORMATS.register("coco")
def load_coco(
    annotation_file: str | os.PathLike | dict,
    images_dir: str | os.PathLike | None = None,
    include_empty_images: bool = True,
    invalid_boxes: str = "error",
    source: str | None = None,
) -> DetectionDataset:
    """Read a COCO instances file (or an in-memory COCO dict, named by ``source``).

    Images are looked up in ``images_dir``, else next to the JSON file, else in an
    ``images/`` folder beside it (``file_name`` may also be absolute). Boxes partly outside
    their image are clipped; boxes of zero size or entirely outside are an error naming
    the annotation (or, with ``invalid_boxes="skip"``, dropped and counted in the log).
    """
    if isinstance(annotation_file, dict):
        data = validate_coco_dict(annotation_file, source or "<annotations>")
        path = Path(source or "<annotations>")
    else:
        path = Path(annotation_file)
        data = read_coco_json(path)
    categories = sorted(data["categories"], key=lambda c: c["id"])
    category_index = {c["id"]: k for k, c in enumerate(categories)}
    images = {}
    for img in data["images"]:
        _require(img, ("id", "file_name", "width", "height"), path, "image")
        if img["id"] in images:
            raise DataError(
                f"{path}: image id {img['id']} is used twice: {images[img['id']]['file_name']} and {img['file_name']}"
            )
        images[img["id"]] = img
    root = _image_root(path, images_dir, [img["file_name"] for img in data["images"]])

    per_image: dict[int, list[dict]] = {i: [] for i in images}
    for ann in data["annotations"]:
        _require(ann, ("id", "image_id", "category_id", "bbox"), path, "annotation")
        if ann["image_id"] not in images:
            raise DataError(f"{path}: annotation {ann['id']}: image_id {ann['image_id']} is not in 'images'")
        if ann["category_id"] not in category_index:
            known = ", ".join(str(c) for c in category_index)
            raise DataError(
                f"{path}: annotation {ann['id']} ({images[ann['image_id']]['file_name']}): "
                f"unknown category_id {ann['category_id']} (known: {known})"
            )
        per_image[ann["image_id"]].append(ann)

    records, skipped = [], 0
    for image_id, img in images.items():
        record, dropped = _record(img, per_image[image_id], category_index, root, path, invalid_boxes)
        skipped += dropped
        if record.num_instances or include_empty_images:
            records.append(record)
    if skipped:
        log.warning("%s: skipped %d invalid boxes (data.invalid_boxes=skip)", path, skipped)
    _check_files_exist(records, path)
    dataset = DetectionDataset(
        records=records,
        class_names=[str(c.get("name", c["id"])) for c in categories],
        category_ids=[int(c["id"]) for c in categories],
        annotation_file=None if isinstance(annotation_file, dict) else str(path),
    )
    if isinstance(annotation_file, dict):
        from detectlab.data.records import quiet_coco

        dataset._coco = quiet_coco(data)
    return dataset


def write_coco(data: dict, out: str | os.PathLike) -> None:
    """Write a COCO dict whose ``file_name`` entries are absolute (or relative to the current
    folder) to ``out``, with each ``file_name`` made relative to ``out``'s folder."""
    from detectlab.utils import atomic_write_json

    out_dir = os.path.dirname(os.path.abspath(out))
    images = [{**img, "file_name": _relative(os.path.abspath(img["file_name"]), out_dir)} for img in data["images"]]
    atomic_write_json(out, {**data, "images": images})


def _relative(path: str, folder: str) -> str:
    try:
        return os.path.relpath(path, folder)
    except ValueError:  # another drive (Windows): keep the absolute path
        return path


def with_absolute_paths(data: dict, dataset: DetectionDataset) -> dict:
    """``data`` with each image's ``file_name`` replaced by the path ``load_coco`` resolved."""
    paths = {r.image_id: os.path.abspath(r.path) for r in dataset.records}
    return {**data, "images": [{**img, "file_name": paths[img["id"]]} for img in data["images"]]}


def read_coco_json(path: Path) -> dict:
    if not path.is_file():
        raise DataError(f"{path}: annotation file not found")
    try:
        with open(path) as f:
            data = json.load(f)
    except json.JSONDecodeError as exc:
        raise DataError(f"{path}: invalid JSON at line {exc.lineno} column {exc.colno}: {exc.msg}") from None
    return validate_coco_dict(data, path)


def validate_coco_dict(data, path) -> dict:
    """Check the top-level structure of a COCO instances dict."""
    if not isinstance(data, dict):
        raise DataError(f"{path}: expected a COCO object with images, annotations and categories")
    for key in ("images", "annotations", "categories"):
        if not isinstance(data.get(key), list):
            raise DataError(f"{path}: missing or invalid '{key}' list (not a COCO instances file?)")
    if not data["categories"]:
        raise DataError(f"{path}: 'categories' is empty")
    return data


def _require(entry: dict, keys: tuple[str, ...], path: Path, kind: str) -> None:
    missing = [k for k in keys if k not in entry]
    if missing:
        ident = entry.get("id", "?")
        raise DataError(f"{path}: {kind} {ident}: missing field '{missing[0]}'")


def _image_root(path: Path, images_dir, file_names: list[str]) -> Path:
    if images_dir is not None:
        root = Path(images_dir)
        if not root.is_dir():
            raise DataError(f"{root}: image folder not found")
        return root
    candidates = [path.parent, path.parent / "images"]
    if not file_names:
        return candidates[0]
    for root in candidates:
        if (root / file_names[0]).exists():
            return root
    return candidates[0]  # _check_files_exist reports what is missing


def _record(img: dict, anns: list[dict], category_index: dict, root: Path, path: Path, invalid: str):
    w, h = int(img["width"]), int(img["height"])
    boxes, class_ids, crowd, difficult, segs, ids, dropped = [], [], [], [], [], [], 0
    for ann in anns:
        bbox = ann["bbox"]
        if not (isinstance(bbox, list) and len(bbox) == 4 and all(isinstance(v, (int, float)) for v in bbox)):
            raise DataError(f"{path}: annotation {ann['id']} ({img['file_name']}): bbox must be [x, y, w, h]")
        x, y, bw, bh = (float(v) for v in bbox)
        y1, x1, y2, x2 = max(y, 0.0), max(x, 0.0), min(y + bh, h), min(x + bw, w)
        finite = all(math.isfinite(v) for v in (x, y, bw, bh))
        if not finite or bw <= 0 or bh <= 0 or x2 <= x1 or y2 <= y1:
            reason = ("has a NaN or infinite value" if not finite else "has zero size" if bw <= 0 or bh <= 0
                      else f"lies outside the {w}x{h} image")
            if invalid == "skip":
                dropped += 1
                continue
            raise DataError(
                f"{path}: annotation {ann['id']} ({img['file_name']}): bbox {bbox} {reason} "
                "(set data.invalid_boxes=skip to drop such boxes)"
            )
        _check_polygons(ann, img, path)
        boxes.append((y1, x1, y2, x2))
        class_ids.append(category_index[ann["category_id"]])
        crowd.append(bool(ann.get("iscrowd", 0)))
        difficult.append(bool(ann.get("difficult", 0)))
        segs.append(ann.get("segmentation"))
        ids.append(ann["id"])
    record = ImageRecord(
        image_id=int(img["id"]),
        path=str(root / img["file_name"]),
        width=w,
        height=h,
        boxes=np.array(boxes, np.float32).reshape(-1, 4),
        class_ids=np.array(class_ids, np.int32),
        iscrowd=np.array(crowd, bool),
        difficult=np.array(difficult, bool),
        segmentations=segs if any(s for s in segs) else None,
        annotation_ids=np.array(ids, np.int64),
    )
    return record, dropped


def _check_polygons(ann: dict, img: dict, path: Path) -> None:
    """Polygons must be flat lists ``[x1, y1, x2, y2, ...]`` of at least 3 finite points."""
    seg = ann.get("segmentation")
    if not isinstance(seg, list):
        return  # RLE (a dict) or absent
    where = f"{path}: annotation {ann['id']} ({img['file_name']}): segmentation polygon"
    for k, poly in enumerate(seg):
        if not isinstance(poly, list) or not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in poly):
            raise DataError(f"{where} {k} must be a list of numbers [x1, y1, x2, y2, ...]")
        if len(poly) % 2:
            raise DataError(f"{where} {k} has an odd number of coordinates ({len(poly)}): x and y must come in pairs")
        if len(poly) < 6:
            raise DataError(f"{where} {k} has {len(poly) // 2} points; a polygon needs at least 3")
        if not all(math.isfinite(v) for v in poly):
            raise DataError(f"{where} {k} has a NaN or infinite value")


def _check_files_exist(records: list[ImageRecord], path: Path) -> None:
    missing = [r.path for r in records if not os.path.isfile(r.path)]
    if missing:
        more = f" and {len(missing) - 1} more" if len(missing) > 1 else ""
        raise DataError(
            f"{path}: image file not found: {missing[0]}{more} (pass the image folder with --images)"
        )
