"""Pascal VOC XML (VOCdevkit or any folder layout) <-> COCO instances dict.

A VOC year folder holds ``Annotations/<id>.xml``, ``JPEGImages/`` and
``ImageSets/Main/<split>.txt`` (one image id per line). Other layouts work too: flat
``annotations/`` + ``images/`` folders beside each other, or any ``annotations_dir`` and
``images_dir``. An image is ``<images>/<filename>``, else the image with the XML's stem
(tools often write a stale ``filename``), else the XML's ``<path>``. Its size is read from
the file; an XML ``<size>`` that disagrees is counted in the log (the file wins). VOC box corners are 1-based
*inclusive* pixel indices, so ``xmin=1, xmax=10`` covers the first ten pixel columns; in
COCO's 0-based, end-exclusive ``[x, y, w, h]`` that box is
``[xmin - 1, ymin - 1, xmax - xmin + 1, ymax - ymin + 1]``. Each annotation keeps VOC's
``difficult`` flag (0/1); VOC mAP ignores difficult ground truth, COCO evaluation does not.
Objects are numbered from 1 in error messages (``object 3`` is the third ``<object>``).
"""

from __future__ import annotations

import os
from pathlib import Path
from xml.sax.saxutils import escape

import numpy as np

from detectlab.data.importers import IMAGE_SUFFIXES, box_fields, coco_dict, image_size, number, parse_xml, register_loader
from detectlab.data.records import DetectionDataset
from detectlab.errors import DataError
from detectlab.utils import log, read_text

SPLITS = ("train", "val", "trainval", "test")
CORNERS = ("xmin", "ymin", "xmax", "ymax")


def read_voc(
    root: str | os.PathLike | None,
    split: str | None = None,
    classes=None,
    images_dir: str | os.PathLike | None = None,
    annotations_dir: str | os.PathLike | None = None,
) -> dict:
    """The images of ``split`` (every ``*.xml`` when None) as a COCO dict.

    ``root``: a VOC year folder, or a folder holding ``annotations/`` (+ ``images/``), or a
    folder of XML files; ``annotations_dir`` / ``images_dir`` override what is found there.
    """
    annotations_dir, image_root = voc_folders(root, images_dir, annotations_dir)
    where = Path(root) if root is not None else annotations_dir
    images, annotations, mismatched = [], [], 0
    for xml_path in _annotation_files(where, annotations_dir, split):
        image, objects, declared = _parse(xml_path, image_root)
        mismatched += declared not in (None, (image["width"], image["height"]))
        for obj in objects:
            obj["image_index"] = len(images)
        images.append(image)
        annotations.extend(objects)
    if mismatched:
        log.warning("%s: %d XML <size> entries differ from their image (the image's size is used)", where, mismatched)
    return coco_dict(images, annotations, classes, where)


def voc_folders(root, images_dir, annotations_dir) -> tuple[Path, Path]:
    """``(annotations folder, image folder)`` of a VOC dataset in any layout."""
    if annotations_dir is None:
        if root is None:
            raise DataError("VOC: give the dataset folder or --annotations DIR")
        root = Path(root)
        found = [root / n for n in ("Annotations", "annotations") if (root / n).is_dir()]
        if not found and not any(root.glob("*.xml")):
            raise DataError(f"{root}: no VOC annotations (no Annotations/ or annotations/ folder, no .xml files)")
        annotations_dir = found[0] if found else root
    annotations_dir = Path(annotations_dir)
    if not annotations_dir.is_dir():
        raise DataError(f"{annotations_dir}: annotation folder not found")
    if images_dir is None:
        base = Path(root) if root is not None else annotations_dir.parent
        found = [base / n for n in ("JPEGImages", "images") if (base / n).is_dir()]
        images_dir = found[0] if found else annotations_dir
    images_dir = Path(images_dir)
    if not images_dir.is_dir():
        raise DataError(f"{images_dir}: image folder not found")
    return annotations_dir, images_dir


load_voc = register_loader("voc", read_voc)


def _annotation_files(root: Path, annotations_dir: Path, split: str | None) -> list[Path]:
    if split is None:
        return sorted(annotations_dir.glob("*.xml"))
    if split not in SPLITS:
        raise DataError(f"{root}: unknown VOC split '{split}' (expected one of: {', '.join(SPLITS)})")
    split_file = root / "ImageSets" / "Main" / f"{split}.txt"
    if not split_file.is_file():
        raise DataError(f"{split_file}: split file not found (without split files, split with --val-ratio)")
    files = []
    for lineno, line in enumerate(read_text(split_file, DataError).splitlines(), 1):
        if not line.strip():
            continue
        image_id = line.split()[0]
        xml_path = annotations_dir / f"{image_id}.xml"
        if not xml_path.is_file():
            raise DataError(f"{split_file}:{lineno}: image '{image_id}' has no annotation file {xml_path}")
        files.append(xml_path)
    return files


def _parse(xml_path: Path, image_root: Path) -> tuple[dict, list[dict], tuple[int, int] | None]:
    """The image entry, its objects and the XML's declared ``(width, height)`` (None if absent)."""
    node = parse_xml(xml_path)
    filename = (node.findtext("filename") or "").strip()
    file_name = _find_image(image_root, filename, xml_path.stem, (node.findtext("path") or "").strip())
    declared = tuple(int(_number(node, f"size/{key}", str(xml_path), default=0)) for key in ("width", "height"))
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
            **box_fields(x1 - 1, y1 - 1, x2, y2, width, height, where),
            "iscrowd": 0,
            "difficult": int(difficult != 0),
            "category_name": name,
            "where": where,
        })
    image = {"file_name": file_name, "width": width, "height": height, "where": str(xml_path)}
    return image, objects, declared if all(declared) else None


def _find_image(image_root: Path, filename: str, stem: str, path: str) -> str:
    """``image_root/filename`` if it exists, else ``image_root/<stem>.<suffix>``, else the
    XML's ``<path>`` (labelImg and :func:`write_voc` write the absolute path there)."""
    candidates = [image_root / filename] if filename else []
    candidates += [image_root / f"{stem}{suffix}" for suffix in IMAGE_SUFFIXES + (".JPG", ".PNG", ".JPEG")]
    candidates += [Path(path)] if path else []
    for candidate in candidates:
        if candidate.is_file():
            return os.path.abspath(candidate)
    return os.path.abspath(candidates[0])  # image_size reports it missing


def _number(node, field: str, where: str, default: float | None = None) -> int | float:
    """The number in ``node``'s child ``field``."""
    text = node.findtext(field)
    if text is None or not text.strip():
        if default is not None:
            return default
        raise DataError(f"{where}: missing {field}")
    return number(text.strip(), field, where)


def write_voc(dataset: DetectionDataset, out_dir: str | os.PathLike, split: str | None = None) -> Path:
    """Write one ``out_dir/Annotations/<image stem>.xml`` per image (and
    ``ImageSets/Main/<split>.txt`` when ``split`` is given); returns the Annotations folder.

    Corners are rounded to whole pixels and written 1-based inclusive (``xmin = round(x) + 1``,
    ``xmax = round(x + w)``); ``difficult`` is kept; crowd regions are left out (logged).
    Images are not copied: ``<path>`` holds each image's absolute path, which the reader uses
    when ``--images`` does not hold the image.
    """
    out_dir = Path(out_dir)
    annotations_dir = out_dir / "Annotations"
    annotations_dir.mkdir(parents=True, exist_ok=True)
    seen, crowd, stems = {}, 0, []
    for record in dataset.records:
        stem = Path(record.path).stem
        if stem in seen:
            raise DataError(f"{record.path}: same file stem as {seen[stem]} (VOC names files by stem)")
        seen[stem] = record.path
        stems.append(stem)
        corners = np.round(record.boxes.astype(np.float64)).astype(int)  # y1 x1 y2 x2
        objects = []
        for k in range(record.num_instances):
            if record.iscrowd[k]:
                crowd += 1
                continue
            y1, x1, y2, x2 = corners[k]
            objects.append(
                f"  <object>\n    <name>{escape(dataset.class_names[record.class_ids[k]])}</name>\n"
                f"    <pose>Unspecified</pose>\n    <truncated>0</truncated>\n"
                f"    <difficult>{int(record.difficult[k])}</difficult>\n"
                f"    <bndbox><xmin>{x1 + 1}</xmin><ymin>{y1 + 1}</ymin><xmax>{max(x2, x1 + 1)}</xmax>"
                f"<ymax>{max(y2, y1 + 1)}</ymax></bndbox>\n  </object>\n"
            )
        (annotations_dir / f"{stem}.xml").write_text(
            f"<annotation>\n  <folder>{escape(Path(record.path).parent.name)}</folder>\n"
            f"  <filename>{escape(Path(record.path).name)}</filename>\n"
            f"  <path>{escape(os.path.abspath(record.path))}</path>\n"
            f"  <size><width>{record.width}</width><height>{record.height}</height><depth>3</depth></size>\n"
            f"  <segmented>0</segmented>\n{''.join(objects)}</annotation>\n"
        )
    if split:
        (out_dir / "ImageSets" / "Main").mkdir(parents=True, exist_ok=True)
        (out_dir / "ImageSets" / "Main" / f"{split}.txt").write_text("".join(s + "\n" for s in stems))
    if crowd:
        log.warning("%s: left out %d crowd regions (VOC XML has no crowd flag)", out_dir, crowd)
    return annotations_dir
