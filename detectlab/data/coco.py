"""COCO JSON -> :class:`DetectionDataset`, validating every annotation on the way in.

Category ids may be any integers (COCO's run 1..90 with gaps); they are mapped to
contiguous class indices in ascending id order and mapped back when results are written.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

import numpy as np

from detectlab.data.bounds import MARGIN, check_image_size, check_points, check_rle
from detectlab.data.records import DetectionDataset, ImageRecord
from detectlab.errors import DataError
from detectlab.registry import DATASET_FORMATS
from detectlab.utils import log, read_json


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
    categories, category_index, images, per_image = _index(data, path)
    places = image_places(path, images_dir)

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
    return validate_coco_dict(read_json(path, DataError), path)


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


def _index(data: dict, path) -> tuple[list[dict], dict, dict, dict]:
    """``(categories sorted by id, {category id: class index}, {image id: image},
    {image id: [annotations]})`` of a COCO dict, every entry's fields and ids checked."""
    for c in data["categories"]:
        _require(c, ("id",), path, "category")
        if not _is_id(c["id"]):
            raise DataError(f"{path}: category id {c['id']!r} must be an integer")
    categories = sorted(data["categories"], key=lambda c: c["id"])
    category_index = {c["id"]: k for k, c in enumerate(categories)}
    images = {}
    for img in data["images"]:
        _require(img, ("id", "file_name", "width", "height"), path, "image")
        if not _is_id(img["id"]) or not isinstance(img["file_name"], str) or not img["file_name"]:
            raise DataError(f"{path}: image {img['id']!r}: id must be an integer and file_name a non-empty string")
        if img["id"] in images:
            raise DataError(
                f"{path}: image id {img['id']} is used twice: {images[img['id']]['file_name']} and {img['file_name']}"
            )
        check_image_size(img["width"], img["height"], f"{path}: image {img['id']} ({img['file_name']})")
        images[img["id"]] = img
    per_image: dict = {i: [] for i in images}
    annotation_images: dict = {}  # annotation id -> its image id
    for ann in data["annotations"]:
        _require(ann, ("id", "image_id", "category_id", "bbox"), path, "annotation")
        if not _is_id(ann["id"]):
            raise DataError(f"{path}: annotation id {str(ann['id'])[:40]!r} must be an integer")
        if not _is_id(ann["image_id"]) or ann["image_id"] not in images:
            raise DataError(f"{path}: annotation {ann['id']}: image_id {ann['image_id']!r} is not in 'images'")
        if not _is_id(ann["category_id"]) or ann["category_id"] not in category_index:
            known = ", ".join(str(c) for c in category_index)
            raise DataError(
                f"{path}: annotation {ann['id']} ({images[ann['image_id']]['file_name']}): "
                f"unknown category_id {ann['category_id']!r} (known: {known})"
            )
        where = f"{path}: annotation {ann['id']} ({images[ann['image_id']]['file_name']})"
        if ann["id"] in annotation_images:  # pycocotools keeps one of them: the other image's box would be scored
            first = images[annotation_images[ann["id"]]]["file_name"]
            raise DataError(f"{where}: annotation id {ann['id']} is used twice (also in {first}); ids must be unique")
        annotation_images[ann["id"]] = ann["image_id"]
        if ann.get("iscrowd", 0) not in (0, 1):
            raise DataError(f"{where}: iscrowd must be 0 or 1, got {str(ann['iscrowd'])[:40]!r}")
        area = ann.get("area", 0)
        if isinstance(area, bool) or not isinstance(area, (int, float)) or not math.isfinite(area) or area < 0:
            raise DataError(f"{where}: area must be a number >= 0, got {str(area)[:40]!r}")
        per_image[ann["image_id"]].append(ann)
    return categories, category_index, images, per_image


def _is_id(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def read_ground_truth(path: str | os.PathLike) -> dict:
    """A COCO file to score results against (``evaluate.py --gt``), checked as :func:`load_coco`
    checks a dataset (structure, ids, image sizes, every box and polygon; nothing skipped),
    without needing the image files."""
    path = Path(path)
    data = read_coco_json(path)
    _, _, images, per_image = _index(data, path)
    for image_id, anns in per_image.items():
        for ann in anns:
            if _checked_box(ann, images[image_id], path, "error", hint="") is not None:
                _check_segmentation(ann, images[image_id], path)
    return data


def _require(entry: dict, keys: tuple[str, ...], path: Path, kind: str) -> None:
    if not isinstance(entry, dict):
        raise DataError(f"{path}: every {kind} must be an object, got {str(entry)[:40]!r}")
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
        box = _checked_box(ann, img, path, invalid)
        if box is None:
            dropped += 1
            continue
        _check_segmentation(ann, img, path)
        boxes.append(box)
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


SKIP_HINT = " (set data.invalid_boxes=skip to drop such boxes)"


def _checked_box(ann: dict, img: dict, path: Path, invalid: str, hint: str = SKIP_HINT):
    """``(y1, x1, y2, x2)`` of ``ann``'s bbox clipped to its image; None when it is invalid and
    ``invalid`` is ``"skip"``, else a one-line error: not 4 numbers, NaN/inf, zero size,
    outside the image, or beyond the margin of :mod:`detectlab.data.bounds`."""
    w, h = int(img["width"]), int(img["height"])
    bbox = ann["bbox"]
    if not (isinstance(bbox, list) and len(bbox) == 4
            and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in bbox)):
        raise DataError(f"{path}: annotation {ann['id']} ({img['file_name']}): bbox must be [x, y, w, h]")
    try:
        x, y, bw, bh = (float(v) for v in bbox)
    except OverflowError:
        x = y = bw = bh = math.inf
    y1, x1, y2, x2 = max(y, 0.0), max(x, 0.0), min(y + bh, h), min(x + bw, w)
    finite = all(math.isfinite(v) for v in (x, y, bw, bh, x + bw, y + bh))
    far = finite and any(v < -MARGIN * side or v > (1 + MARGIN) * side
                         for v, side in ((x, w), (x + bw, w), (y, h), (y + bh, h)))
    if not finite or far or bw <= 0 or bh <= 0 or x2 <= x1 or y2 <= y1:
        reason = ("has a NaN or infinite value" if not finite
                  else f"lies far outside the {w}x{h} image (more than {MARGIN:g} image width/height away)" if far
                  else "has zero size" if bw <= 0 or bh <= 0 else f"lies outside the {w}x{h} image")
        if invalid == "skip":
            return None
        raise DataError(f"{path}: annotation {ann['id']} ({img['file_name']}): bbox {bbox} {reason}{hint}")
    return y1, x1, y2, x2


def _check_segmentation(ann: dict, img: dict, path: Path) -> None:
    """Polygons: flat lists ``[x1, y1, x2, y2, ...]`` of at least 3 points, each finite and
    near the image (:func:`detectlab.data.bounds.check_points`); RLE: the image's size, run
    lengths adding up to it (:func:`detectlab.data.bounds.check_rle`)."""
    seg = ann.get("segmentation")
    where = f"{path}: annotation {ann['id']} ({img['file_name']}): segmentation"
    if isinstance(seg, dict):
        check_rle(seg, int(img["height"]), int(img["width"]), where)
        return
    if seg is None or seg == []:
        return
    if not isinstance(seg, list):
        raise DataError(f"{where} must be a list of polygons or an RLE object")
    for k, poly in enumerate(seg):
        if not isinstance(poly, list) or not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in poly):
            raise DataError(f"{where} polygon {k} must be a list of numbers [x1, y1, x2, y2, ...]")
        if len(poly) % 2:
            raise DataError(f"{where} polygon {k} has an odd number of coordinates ({len(poly)}): x and y must come in pairs")
        if len(poly) < 6:
            raise DataError(f"{where} polygon {k} has {len(poly) // 2} points; a polygon needs at least 3")
        try:
            points = np.asarray(poly, np.float64)
        except OverflowError:
            points = np.full(len(poly), np.inf)
        check_points(points, img["width"], img["height"], where.rsplit(": ", 1)[0], f"segmentation polygon {k}")


def _check_files_exist(records: list[ImageRecord], path: Path, places, file_names: dict) -> None:
    missing = [r for r in records if not os.path.isfile(r.path)]
    if missing:
        name = file_names[missing[0].image_id]
        tried = ", ".join(str(p) for p in places(name))
        more = f" ({len(missing) - 1} more images missing)" if len(missing) > 1 else ""
        raise DataError(f"{path}: image '{name}' not found; tried {tried}{more} (pass the image folder with --images)")


def coco_image_ids(paths, annotation_file) -> tuple[list, list[int]]:
    """The ``paths`` that are images of a COCO file, and their ids, matched by ``file_name``
    (as written, or its last path components). The others (a folder holding every split's
    images) are left out and counted in the log; when none matches it is a ``DataError``."""
    data = read_coco_json(Path(annotation_file))
    ids = match_file_names([str(p) for p in paths], data["images"], str(annotation_file), resolve=True,
                           allow_unmatched=True)
    kept = [(p, i) for p, i in zip(paths, ids) if i is not None]
    if not kept:
        raise DataError(f"{annotation_file}: none of the {len(paths)} input images is one of its images "
                        f"(first tried: {paths[0]}; file_names are matched by their last path components)")
    if len(kept) < len(paths):
        log.info("%s: predicting its %d images among the inputs; %d other images left out", annotation_file,
                 len(kept), len(paths) - len(kept))
    missing = len({img["id"] for img in data["images"]} - {i for _, i in kept})
    if missing:
        log.warning("%s: %d of its %d images are not among the inputs (they count as missed if scored)",
                    annotation_file, missing, len(data["images"]))
    return [p for p, _ in kept], [i for _, i in kept]


def match_file_names(names: list[str], images: list[dict], source: str, resolve: bool = False,
                     allow_unmatched: bool = False) -> list:
    """The id of the image in ``images`` (COCO ``images`` entries) that each of ``names`` is:
    the entry whose ``file_name`` ends with the most path components of the name (``resolve``:
    of the name's absolute path). A name matching several images is a ``DataError``; one
    matching none is too, or ``None`` with ``allow_unmatched``."""
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
            if not allow_unmatched:
                raise DataError(f"{name}: not among the images of {source} (no file_name matches)")
            ids.append(None)
            continue
        if len(set(matches)) > 1:
            raise DataError(f"{name}: matches several images of {source} ({', '.join(map(str, matches[:3]))})")
        ids.append(matches[0])
    return ids
