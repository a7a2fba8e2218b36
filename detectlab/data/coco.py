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

    An image is ``file_name`` relative to ``images_dir`` when given (also its bare name
    there), else relative to the JSON file (as ``datasets/convert.py`` writes it), else in an
    ``images/`` folder beside the JSON; ``file_name`` may also be absolute. A missing image is an
    error naming every place tried. Boxes partly outside
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
    places = image_places(path, images_dir)

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
        record, dropped = _record(img, per_image[image_id], category_index, places, path, invalid_boxes)
        skipped += dropped
        if record.num_instances or include_empty_images:
            records.append(record)
    if skipped:
        log.warning("%s: skipped %d invalid boxes (data.invalid_boxes=skip)", path, skipped)
    _check_files_exist(records, path, places, {int(i["id"]): str(i["file_name"]) for i in data["images"]})
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


def read_coco_source(path, images_dir=None) -> dict:
    """A COCO file as a dict whose ``file_name`` entries are the absolute image paths
    :func:`load_coco` finds (``datasets/convert.py`` reads every format this way)."""
    return with_absolute_paths(read_coco_json(Path(path)), load_coco(Path(path), images_dir))


load_coco.read = read_coco_source


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


def image_places(annotation_file: Path, images_dir=None):
    """``file_name -> [candidate paths]`` in the order :func:`load_coco` tries them."""
    json_dir = annotation_file.parent
    if images_dir is not None:
        root = Path(images_dir)
        if not root.is_dir():
            raise DataError(f"{root}: image folder not found")

    def places(file_name: str) -> list[Path]:
        name = Path(file_name)
        if name.is_absolute():
            return [name] + ([root / name.name] if images_dir is not None else [])
        found = [root / name, root / name.name] if images_dir is not None else []
        return list(dict.fromkeys(found + [json_dir / name, json_dir / "images" / name]))

    return places


def _image_path(places, file_name: str) -> str:
    """The first existing candidate of ``file_name`` (else the first one, for the error)."""
    candidates = places(file_name)
    return str(next((c for c in candidates if c.is_file()), candidates[0]))


def _record(img: dict, anns: list[dict], category_index: dict, places, path: Path, invalid: str):
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
        path=_image_path(places, str(img["file_name"])),
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


def _check_files_exist(records: list[ImageRecord], path: Path, places, file_names: dict) -> None:
    missing = [r for r in records if not os.path.isfile(r.path)]
    if missing:
        name = file_names[missing[0].image_id]
        tried = ", ".join(str(p) for p in places(name))
        more = f" ({len(missing) - 1} more images missing)" if len(missing) > 1 else ""
        raise DataError(f"{path}: image '{name}' not found; tried {tried}{more} (pass the image folder with --images)")


def coco_image_ids(paths, annotation_file) -> list[int]:
    """The ids of image ``paths`` in a COCO file, matched by ``file_name`` (as written, or its
    last path components)."""
    data = read_coco_json(Path(annotation_file))
    return match_file_names([str(p) for p in paths], data["images"], str(annotation_file), resolve=True)


def match_file_names(names: list[str], images: list[dict], source: str, resolve: bool = False) -> list[int]:
    """The id of the image in ``images`` (COCO ``images`` entries) that each of ``names`` is:
    the entry whose ``file_name`` ends with the most path components of the name (``resolve``:
    of the name's absolute path). A name matching none, or several images, is a ``DataError``."""
    by_tail: dict[Path, list] = {}
    for image in images:
        parts = Path(str(image.get("file_name", ""))).parts
        for k in range(1, len(parts) + 1):
            by_tail.setdefault(Path(*parts[-k:]), []).append(image["id"])
    ids = []
    for name in names:
        parts = (Path(name).resolve() if resolve else Path(name)).parts
        matches = next((by_tail[Path(*parts[-k:])] for k in range(len(parts), 0, -1) if Path(*parts[-k:]) in by_tail), None)
        if matches is None:
            raise DataError(f"{name}: not among the images of {source} (no file_name matches)")
        if len(set(matches)) > 1:
            raise DataError(f"{name}: matches several images of {source} ({', '.join(map(str, matches[:3]))})")
        ids.append(matches[0])
    return ids

