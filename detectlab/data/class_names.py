"""Class names: COCO's 80 (built in, for 80-class files), and names files users bring.

A model trained on COCO's 80 detection classes (Darknet's and keras-yolo3's published
files) uses them in COCO's category-id order, which is also the order of Darknet's
``coco.names``; :data:`COCO_CATEGORY_IDS` maps them back to COCO's ids (1..90 with gaps),
so results score against a COCO ground truth.
"""

from __future__ import annotations

from pathlib import Path

from detectlab.errors import ConfigError, DataError

COCO_CLASS_NAMES = [
    "person", "bicycle", "car", "motorcycle", "airplane", "bus", "train", "truck", "boat", "traffic light",
    "fire hydrant", "stop sign", "parking meter", "bench", "bird", "cat", "dog", "horse", "sheep", "cow",
    "elephant", "bear", "zebra", "giraffe", "backpack", "umbrella", "handbag", "tie", "suitcase", "frisbee",
    "skis", "snowboard", "sports ball", "kite", "baseball bat", "baseball glove", "skateboard", "surfboard",
    "tennis racket", "bottle", "wine glass", "cup", "fork", "knife", "spoon", "bowl", "banana", "apple",
    "sandwich", "orange", "broccoli", "carrot", "hot dog", "pizza", "donut", "cake", "chair", "couch",
    "potted plant", "bed", "dining table", "toilet", "tv", "laptop", "mouse", "remote", "keyboard", "cell phone",
    "microwave", "oven", "toaster", "sink", "refrigerator", "book", "clock", "vase", "scissors", "teddy bear",
    "hair drier", "toothbrush",
]
COCO_CATEGORY_IDS = [
    1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 13, 14, 15, 16, 17, 18, 19, 20, 21, 22, 23, 24, 25, 27, 28, 31, 32, 33, 34,
    35, 36, 37, 38, 39, 40, 41, 42, 43, 44, 46, 47, 48, 49, 50, 51, 52, 53, 54, 55, 56, 57, 58, 59, 60, 61, 62, 63,
    64, 65, 67, 70, 72, 73, 74, 75, 76, 77, 78, 79, 80, 81, 82, 84, 85, 86, 87, 88, 89, 90,
]


def names_from_yaml_value(names, source) -> list[str]:
    """A data.yaml ``names`` entry (a list, or ``{id: name}`` with ids 0..C-1) as a list."""
    if isinstance(names, list) and names:
        return [str(n) for n in names]
    if isinstance(names, dict) and names:
        try:
            ids = sorted(int(k) for k in names)
        except (TypeError, ValueError):
            raise DataError(f"{source}: names keys must be class ids 0, 1, ...") from None
        if ids != list(range(len(ids))):
            raise DataError(f"{source}: names ids must be 0..{len(ids) - 1} without gaps, got {ids}")
        return [str(names.get(k, names.get(str(k)))) for k in ids]
    raise DataError(f"{source}: 'names' must be a non-empty list or {{id: name}} mapping")


def read_class_names(spec: str) -> list[str]:
    """``--class-names``: a names file (one name per line, e.g. Darknet's ``coco.names``), a
    YOLO ``data.yaml`` (its ``names``), or names separated by commas."""
    path = Path(spec)
    if path.is_file():
        if path.suffix.lower() in (".yaml", ".yml"):
            from detectlab.utils import read_yaml

            data = read_yaml(path, DataError)
            if not isinstance(data, dict) or "names" not in data:
                raise DataError(f"{path}: no 'names' entry (a YOLO data.yaml lists its classes under names:)")
            return names_from_yaml_value(data["names"], path)
        try:
            names = [line.strip() for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
        except UnicodeDecodeError:
            raise DataError(f"{path}: not a UTF-8 text file of class names") from None
        if not names:
            raise DataError(f"{path}: no class names in the file")
        return names
    if any(sep in spec for sep in "/\\") or spec.endswith((".names", ".txt", ".yaml", ".yml")):
        raise ConfigError(f"--class-names {spec}: file not found")
    names = [n.strip() for n in spec.split(",")]
    if not all(names):
        raise ConfigError(f"--class-names {spec!r}: an empty name (expected a file or names separated by commas)")
    return names
