"""The built-in synthetic "shapes" dataset, written to disk in COCO format.

Squares, circles and triangles in random colours on random (gradient + noise)
backgrounds. Both the number of instances per image (0 to 6, mostly 1-3) and the class
frequencies (squares > circles > triangles) are deliberately unbalanced. Shapes do not
overlap, so every polygon is also the exact visible mask.

Layout written under ``out``::

    instances_train.json   instances_val.json   shapes.json (parameters)
    train/000000.jpg ...   val/000000.jpg ...
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import cv2
import numpy as np

from detectlab.inference.visualize import save_image
from detectlab.utils import atomic_write_json, log

CLASSES = ("square", "circle", "triangle")
CLASS_FREQUENCIES = (0.5, 0.3, 0.2)
INSTANCES_PER_IMAGE = (0.03, 0.3, 0.3, 0.17, 0.1, 0.06, 0.04)  # P(0), P(1), ... P(6)


def write_shapes_dataset(out: str | os.PathLike, train: int = 800, val: int = 100, size: int = 128, seed: int = 0) -> dict[str, str]:
    """Write the dataset (if not already there with the same parameters).

    Returns ``{"train": json_path, "val": json_path}``.
    """
    out = Path(out)
    params = {"train": int(train), "val": int(val), "size": int(size), "seed": int(seed), "version": 1}
    manifest = out / "shapes.json"
    paths = {split: str(out / f"instances_{split}.json") for split in ("train", "val")}
    if manifest.is_file() and json.loads(manifest.read_text()) == params and all(map(os.path.isfile, paths.values())):
        return paths
    if size < 32:
        raise ValueError(f"shapes: size must be at least 32 pixels, got {size}")
    log.info("writing the shapes dataset to %s (%d train / %d val images, %d px)", out, train, val, size)
    for split_index, (split, count) in enumerate((("train", train), ("val", val))):
        rng = np.random.default_rng([seed, split_index])
        coco = _split(out, split, count, size, rng)
        atomic_write_json(paths[split], coco)
    atomic_write_json(manifest, params)
    return paths


def _split(out: Path, split: str, count: int, size: int, rng: np.random.Generator) -> dict:
    (out / split).mkdir(parents=True, exist_ok=True)
    images, annotations = [], []
    for i in range(count):
        image, shapes = draw_image(size, rng)
        file_name = f"{split}/{i:06d}.jpg"
        save_image(out / file_name, image, (cv2.IMWRITE_JPEG_QUALITY, 95))
        images.append({"id": i + 1, "file_name": file_name, "width": size, "height": size})
        for class_id, polygon in shapes:
            xs, ys = polygon[:, 0], polygon[:, 1]
            x1, y1, x2, y2 = xs.min(), ys.min(), xs.max(), ys.max()
            annotations.append(
                {
                    "id": len(annotations) + 1,
                    "image_id": i + 1,
                    "category_id": class_id + 1,
                    "bbox": [round(float(v), 2) for v in (x1, y1, x2 - x1, y2 - y1)],
                    "area": round(float(_polygon_area(polygon)), 2),
                    "segmentation": [[round(float(v), 2) for v in polygon.reshape(-1)]],
                    "iscrowd": 0,
                }
            )
    return {
        "info": {"description": "detectlab synthetic shapes", "version": "1"},
        "images": images,
        "annotations": annotations,
        "categories": [{"id": k + 1, "name": name, "supercategory": "shape"} for k, name in enumerate(CLASSES)],
    }


def draw_image(size: int, rng: np.random.Generator) -> tuple[np.ndarray, list[tuple[int, np.ndarray]]]:
    """One RGB image and its shapes as ``(class index, (K, 2) polygon x, y)`` pairs."""
    background = rng.integers(0, 256, 3)
    image = _background(size, background, rng)
    count = rng.choice(len(INSTANCES_PER_IMAGE), p=INSTANCES_PER_IMAGE)
    placed: list[np.ndarray] = []  # x1 y1 x2 y2 of placed shapes
    shapes = []
    for _ in range(count):
        for _attempt in range(30):
            class_id = int(rng.choice(len(CLASSES), p=CLASS_FREQUENCIES))
            radius = rng.uniform(0.07, 0.22) * size
            cx, cy = rng.uniform(radius, size - radius, 2)
            polygon = _polygon(class_id, cx, cy, radius)
            box = np.r_[polygon.min(0), polygon.max(0)]
            if all(_gap(box, other) > 2 for other in placed):
                break
        else:
            continue
        colour = _contrasting_colour(background, rng)
        cv2.fillPoly(image, [np.round(polygon * 16).astype(np.int32)], colour.tolist(), cv2.LINE_8, shift=4)
        placed.append(box)
        shapes.append((class_id, polygon))
    return image, shapes


def _background(size: int, colour: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    ramp = np.linspace(-1, 1, size, dtype=np.float32)
    direction = rng.uniform(-40, 40, 2)
    shade = ramp[None, :, None] * direction[0] + ramp[:, None, None] * direction[1]
    noise = rng.normal(0, 6, (size, size, 1))
    return np.clip(colour[None, None, :] + shade + noise, 0, 255).astype(np.uint8)


def _polygon(class_id: int, cx: float, cy: float, r: float) -> np.ndarray:
    if CLASSES[class_id] == "square":
        return np.array([[cx - r, cy - r], [cx + r, cy - r], [cx + r, cy + r], [cx - r, cy + r]], np.float32)
    if CLASSES[class_id] == "circle":
        t = np.linspace(0, 2 * np.pi, 32, endpoint=False)
        return np.stack([cx + r * np.cos(t), cy + r * np.sin(t)], 1).astype(np.float32)
    t = np.deg2rad([-90, 30, 150])  # equilateral triangle pointing up
    return np.stack([cx + r * np.cos(t), cy + r * np.sin(t)], 1).astype(np.float32)


def _gap(a: np.ndarray, b: np.ndarray) -> float:
    """Distance between two x1 y1 x2 y2 boxes (negative when they overlap)."""
    return max(b[0] - a[2], a[0] - b[2], b[1] - a[3], a[1] - b[3])


def _contrasting_colour(background: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    for _ in range(50):
        colour = rng.integers(0, 256, 3)
        if np.abs(colour - background).sum() > 150:
            return colour
    return 255 - background


def _polygon_area(p: np.ndarray) -> float:
    x, y = p[:, 0], p[:, 1]
    return 0.5 * abs(float(np.dot(x, np.roll(y, 1)) - np.dot(y, np.roll(x, 1))))
