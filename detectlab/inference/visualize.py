"""Draw detections (boxes, labels, masks) on images and save them."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from detectlab.inference.predictor import Detections


def class_colour(class_id: int) -> tuple[int, int, int]:
    hue = (class_id * 47) % 180
    hsv = np.uint8([[[hue, 200, 255]]])
    return tuple(int(c) for c in cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB)[0, 0])


def draw_detections(image: np.ndarray, det: Detections, class_names: list[str]) -> np.ndarray:
    """RGB image with each detection's mask, box and ``name score`` label."""
    labels = [f"{class_names[int(c)]} {s:.2f}" for c, s in zip(det.class_ids, det.scores)]
    return draw_instances(image, det.boxes, det.class_ids, labels, det.masks)


def draw_instances(image: np.ndarray, boxes: np.ndarray, class_ids: np.ndarray, labels: list[str],
                   masks: np.ndarray | None = None, grey: np.ndarray | None = None) -> np.ndarray:
    """RGB image with masks (``uint8 (K, H, W)``), boxes (``(K, 4)`` y1 x1 y2 x2 pixels) and
    labels drawn in each class's colour; instances flagged in ``grey`` (e.g. crowd) in grey."""
    out = image.copy()
    scale = max(1.0, max(image.shape[:2]) / 400)
    for k in range(len(boxes)):
        colour = (160, 160, 160) if grey is not None and grey[k] else class_colour(int(class_ids[k]))
        if masks is not None:
            m = masks[k].astype(bool)
            out[m] = (0.5 * out[m] + 0.5 * np.array(colour)).astype(np.uint8)
        y1, x1, y2, x2 = (int(round(v)) for v in boxes[k])
        cv2.rectangle(out, (x1, y1), (x2, y2), colour, max(1, int(scale)))
        font = 0.35 * scale
        (tw, th), _ = cv2.getTextSize(labels[k], cv2.FONT_HERSHEY_SIMPLEX, font, 1)
        ty = max(th + 2, y1)
        cv2.rectangle(out, (x1, ty - th - 2), (x1 + tw + 2, ty), colour, -1)
        cv2.putText(out, labels[k], (x1 + 1, ty - 2), cv2.FONT_HERSHEY_SIMPLEX, font, (0, 0, 0), 1, cv2.LINE_AA)
    return out


def save_image(path, image: np.ndarray) -> None:
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), cv2.cvtColor(image, cv2.COLOR_RGB2BGR))


def grid(images: list[np.ndarray], columns: int = 4, cell: int = 256) -> np.ndarray:
    """Tile images (resized to ``cell`` px, letterboxed) into one picture."""
    rows = (len(images) + columns - 1) // columns
    canvas = np.full((rows * cell, columns * cell, 3), 255, np.uint8)
    for k, im in enumerate(images):
        h, w = im.shape[:2]
        s = cell / max(h, w)
        small = cv2.resize(im, (max(1, int(w * s)), max(1, int(h * s))), interpolation=cv2.INTER_AREA)
        r, c = divmod(k, columns)
        canvas[r * cell : r * cell + small.shape[0], c * cell : c * cell + small.shape[1]] = small
    return canvas
