"""YOLO txt (Darknet / Ultralytics) <-> COCO instances dict.

One ``.txt`` per image (same stem), one object per line, all coordinates normalised to
``[0, 1]`` by the image size (continuous coordinates, origin at the top-left corner):

- box: ``class cx cy w h`` -> COCO ``[x, y, w, h]`` = ``[(cx - w/2) W, (cy - h/2) H, w W, h H]``;
- segment: ``class x1 y1 x2 y2 x3 y3 ...`` -> a COCO polygon (``bbox`` its extent).

An empty label file means an image without objects; an image without a label file is kept
as one too (counted in the log). A label file is found by replacing the last ``images``
folder of the image's path with ``labels`` (Ultralytics), else next to the image (Darknet).

The dataset is a ``data.yaml`` (``path``, ``train``/``val``: folders, list files or lists of
them, relative to ``path`` or the YAML's folder; ``names``: a list or ``{id: name}``; a folder
holding ``data.yaml`` means that file), or a folder holding ``images/`` (+ ``labels/``), or
images and labels side by side; class names then come from ``classes``, ``classes.txt`` /
``obj.names`` in the folder, else ``"0"``, ``"1"``, ... (logged).
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np

from detectlab.data.importers import (
    IMAGE_SUFFIXES, coco_dict, image_size, number, parse_classes, polygon_fields, register_loader,
)
from detectlab.data.class_names import names_from_yaml_value
from detectlab.data.records import DetectionDataset
from detectlab.errors import DataError
from detectlab.utils import log

NAME_FILES = ("classes.txt", "obj.names")


def read_yolo(
    path: str | os.PathLike,
    split: str | None = None,
    classes=None,
    images_dir: str | os.PathLike | None = None,
) -> dict:
    """The images of a YOLO dataset as a COCO dict (``split``: a ``data.yaml`` key, default
    ``train``; for a folder, ``images/<split>/`` when it exists, else every image)."""
    path = Path(path)
    if path.is_dir() and images_dir is None and (path / "data.yaml").is_file():
        path = path / "data.yaml"  # a dataset folder as Ultralytics ships it
    if path.is_file():
        images, names = _from_yaml(path, split or "train")
    elif path.is_dir():
        images, names = _from_folder(Path(images_dir) if images_dir else path, path, split)
    else:
        raise DataError(f"{path}: no such data.yaml or folder")
    names = parse_classes(classes, path) if classes is not None else names
    if not images:
        raise DataError(f"{path}: no images found (looked for {', '.join(IMAGE_SUFFIXES)})")
    out_images, annotations, unlabelled, max_id = [], [], 0, -1
    for image_path in images:
        label_path = label_file(image_path)
        width, height = image_size(image_path)
        out_images.append({"file_name": str(image_path), "width": width, "height": height})
        if not label_path.is_file():
            unlabelled += 1
            continue
        for entry in _read_labels(label_path, names, width, height):
            max_id = max(max_id, entry["class_id"])
            annotations.append({**entry, "image_index": len(out_images) - 1})
    if unlabelled:
        log.warning("%s: %d of %d images have no label file (kept as images without objects)",
                    path, unlabelled, len(out_images))
    if names is None:
        names = [str(k) for k in range(max_id + 1)] or ["0"]
        log.warning("%s: no class names (data.yaml names, classes.txt or --classes): using %s",
                    path, ", ".join(names))
    for ann in annotations:
        ann["category_name"] = names[ann.pop("class_id")]
    return coco_dict(out_images, annotations, names, path)


load_yolo = register_loader("yolo", read_yolo)


def label_file(image_path: Path) -> Path:
    """The label ``.txt`` of an image: its last ``images`` folder replaced by ``labels``."""
    parts = list(image_path.parts)
    for k in range(len(parts) - 2, -1, -1):
        if parts[k] == "images":
            parts[k] = "labels"
            return Path(*parts).with_suffix(".txt")
    return image_path.with_suffix(".txt")


def _images_in(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())


def _from_folder(image_folder: Path, root: Path, split: str | None) -> tuple[list[Path], list[str] | None]:
    if (image_folder / "images").is_dir():
        image_folder = image_folder / "images"
    if split is not None:
        if not (image_folder / split).is_dir():
            raise DataError(f"{image_folder}: no '{split}' folder for split '{split}'")
        image_folder = image_folder / split
    names = None
    for name_file in NAME_FILES:
        if (root / name_file).is_file():
            names = [line.strip() for line in (root / name_file).read_text().splitlines() if line.strip()]
            break
    return _images_in(image_folder), names


def _from_yaml(path: Path, split: str) -> tuple[list[Path], list[str]]:
    from detectlab.utils import read_yaml

    spec = read_yaml(path, DataError)
    if not isinstance(spec, dict):
        raise DataError(f"{path}: expected a mapping with names and {split}")
    root = path.parent / str(spec.get("path") or ".")
    if split not in spec or spec[split] is None:
        raise DataError(f"{path}: no '{split}' entry (keys: {', '.join(map(str, spec))})")
    entries = spec[split] if isinstance(spec[split], list) else [spec[split]]
    images = []
    for entry in entries:
        target = root / str(entry)
        if target.is_dir():
            images += _images_in(target)
        elif target.is_file():
            images += _list_file(target)
        else:
            raise DataError(f"{path}: {split}: {target} is neither a folder nor a list file")
    return images, names_from_yaml_value(spec.get("names"), path)


def _list_file(path: Path) -> list[Path]:
    """Image paths listed one per line; relative ones are relative to the list file's folder,
    else to the current folder (Darknet's ``data/obj/x.jpg`` lines)."""
    images = []
    for lineno, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip():
            continue
        candidates = [(path.parent / line.strip()).resolve(), Path(line.strip()).resolve()]
        image_path = next((c for c in candidates if c.is_file()), None)
        if image_path is None:
            raise DataError(f"{path}:{lineno}: image not found: {candidates[0]}")
        images.append(image_path)
    return images


def _read_labels(path: Path, names: list[str] | None, width: int, height: int) -> list[dict]:
    """The objects of a label file: COCO fields plus ``class_id``."""
    out = []
    for lineno, line in enumerate(path.read_text(encoding="utf-8-sig").splitlines(), 1):
        tokens = line.split()
        if not tokens:
            continue
        where = f"{path}:{lineno}"
        if len(tokens) != 5 and (len(tokens) < 7 or len(tokens) % 2 == 0):
            raise DataError(
                f"{where}: expected 'class cx cy w h' or 'class x1 y1 x2 y2 x3 y3 ...', got {len(tokens)} values"
            )
        class_id = number(tokens[0], "class", where)
        if not isinstance(class_id, int) or class_id < 0 or (names is not None and class_id >= len(names)):
            known = f" (names has 0..{len(names) - 1})" if names is not None else ""
            raise DataError(f"{where}: class {tokens[0]!r} is not a valid class id{known}")
        values = np.array([number(t, "coordinate", where) for t in tokens[1:]], np.float64)
        if values.min() < -0.01 or values.max() > 1.01:
            raise DataError(f"{where}: coordinates must be normalised to 0..1, got {values.max():g} (pixels?)")
        scale = np.array([width, height], np.float64)
        if len(tokens) == 5:
            cx, cy, w, h = values
            if w <= 0 or h <= 0:
                raise DataError(f"{where}: box has {'w' if w <= 0 else 'h'} <= 0")
            x, y, bw, bh = (cx - w / 2) * width, (cy - h / 2) * height, w * width, h * height
            entry = {"bbox": [round(float(v), 3) for v in (x, y, bw, bh)], "area": round(float(bw * bh), 3)}
        else:
            entry = polygon_fields([values.reshape(-1, 2) * scale], width, height)
        out.append({**entry, "iscrowd": 0, "class_id": class_id, "where": where})
    return out


def write_yolo(dataset: DetectionDataset, out_dir: str | os.PathLike, split: str = "train", copy_images: bool = False) -> Path:
    """Write ``dataset`` as ``out_dir/images/<split>/`` (symlinks, or copies) + ``labels/<split>/``
    and add ``split`` and ``names`` to ``out_dir/data.yaml``; returns the YAML's path.

    Instances with polygon masks become segment lines (an instance of several polygons is one
    outline joined by zero-width bridges), others box lines; crowd regions are left out (logged).
    """
    import yaml

    out_dir = Path(out_dir)
    image_dir, label_dir = out_dir / "images" / split, out_dir / "labels" / split
    image_dir.mkdir(parents=True, exist_ok=True)
    label_dir.mkdir(parents=True, exist_ok=True)
    seen, crowd = {}, 0
    for record in dataset.records:
        name = Path(record.path).name
        if name in seen:
            raise DataError(f"{record.path}: same file name as {seen[name]} (YOLO needs one folder per split)")
        seen[name] = record.path
        target = image_dir / name
        if target.exists() or target.is_symlink():
            target.unlink()
        _place(Path(record.path).resolve(), target, copy_images)
        lines = []
        for k in range(record.num_instances):
            if record.iscrowd[k]:
                crowd += 1
                continue
            lines.append(f"{record.class_ids[k]} " + " ".join(f"{v:.6f}" for v in _yolo_values(record, k)))
        (label_dir / f"{Path(name).stem}.txt").write_text("".join(line + "\n" for line in lines))
    if crowd:
        log.warning("%s: left out %d crowd regions (YOLO txt has no crowd flag)", out_dir, crowd)
    yaml_path = out_dir / "data.yaml"
    spec = yaml.safe_load(yaml_path.read_text()) if yaml_path.is_file() else {}
    spec.update({"path": ".", split: f"images/{split}", "names": dict(enumerate(dataset.class_names))})
    yaml_path.write_text(yaml.safe_dump(spec, sort_keys=False))
    return yaml_path


def _place(source: Path, target: Path, copy_images: bool) -> None:
    if not copy_images:
        try:
            target.symlink_to(source)
            return
        except OSError:  # no symlinks here (Windows without the privilege): copy
            pass
    shutil.copyfile(source, target)


def _yolo_values(record, k: int) -> np.ndarray:
    """Normalised ``cx cy w h`` of instance ``k``, or its outline ``x1 y1 x2 y2 ...``."""
    scale = np.array([record.width, record.height], np.float64)
    seg = record.segmentations[k] if record.segmentations is not None else None
    if isinstance(seg, list) and seg and all(len(p) >= 6 for p in seg):
        polygons = [np.asarray(p, np.float64).reshape(-1, 2) for p in seg]
        outline = polygons[0]
        for polygon in polygons[1:]:  # bridge: ... first point of A, polygon B closed, back to A
            outline = np.concatenate([outline, outline[:1], polygon, polygon[:1]])
        return (np.clip(outline, 0, scale) / scale).reshape(-1)
    y1, x1, y2, x2 = record.boxes[k].astype(np.float64)
    return np.array([(x1 + x2) / 2 / record.width, (y1 + y2) / 2 / record.height,
                     (x2 - x1) / record.width, (y2 - y1) / record.height])
