"""Draw detections (boxes, labels, masks) on images and save them."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from detectlab.errors import DataError
from detectlab.inference.predictor import Detections


def class_colour(class_id: int) -> tuple[int, int, int]:
    hue = (class_id * 47) % 180
    hsv = np.uint8([[[hue, 200, 255]]])
    return tuple(int(c) for c in cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB)[0, 0])


def draw_detections(image: np.ndarray, det: Detections, class_names: list[str], scores: bool = True) -> np.ndarray:
    """RGB image with each detection's mask, box and ``name score`` label (``name`` alone
    without ``scores``, e.g. for ground truth)."""
    labels = [class_names[int(c)] + (f" {s:.2f}" if scores else "") for c, s in zip(det.class_ids, det.scores)]
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


def draw_resized(image: np.ndarray, det: Detections, class_names: list[str], size: int = 256, scores: bool = True) -> np.ndarray:
    """:func:`draw_detections` on ``image`` resized so its longer side is ``size`` px (boxes
    and masks follow), so labels stay readable on small or large images alike."""
    s = size / max(image.shape[:2])
    h, w = max(1, round(image.shape[0] * s)), max(1, round(image.shape[1] * s))
    masks = None
    if det.masks is not None:
        masks = np.zeros((len(det.masks), h, w), np.uint8)
        for k, m in enumerate(det.masks):
            masks[k] = cv2.resize(m, (w, h), interpolation=cv2.INTER_NEAREST)
    resized = Detections(det.boxes * np.float32(s), det.scores, det.class_ids, masks)
    return draw_detections(cv2.resize(image, (w, h), interpolation=cv2.INTER_LINEAR), resized, class_names, scores)


JPEG_MAX_SIDE = 65500  # pixels per side a baseline JPEG can hold (libjpeg's limit)


def save_image(path, image: np.ndarray, params: tuple[int, ...] = ()) -> None:
    """Write RGB ``uint8 (H, W, 3)`` ``image`` to ``path`` (format from its suffix, OpenCV
    ``params``), creating its folder. A write OpenCV refuses is a one-line ``DataError``
    (``cv2.imwrite`` only returns False)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    h, w = image.shape[:2]
    if path.suffix.lower() in (".jpg", ".jpeg") and max(h, w) > JPEG_MAX_SIDE:
        raise DataError(f"{path}: cannot write a {w}x{h} image as JPEG (at most {JPEG_MAX_SIDE} pixels per side)")
    try:
        written = cv2.imwrite(str(path), cv2.cvtColor(image, cv2.COLOR_RGB2BGR), list(params))
    except cv2.error as exc:
        raise DataError(f"{path}: OpenCV cannot write this image ({str(exc).strip().splitlines()[-1]})") from None
    if not written:
        raise DataError(f"{path}: OpenCV could not write this {w}x{h} image (full disk, read-only folder?)")


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


def captioned_pair(left: np.ndarray, right: np.ndarray, captions: tuple[str, str], cell: int = 256) -> np.ndarray:
    """Two RGB images side by side in ``cell``-px squares, each with a caption:
    ``uint8 (cell, 2 * cell, 3)``."""
    out = grid([left, right], columns=2, cell=cell)
    for k, text in enumerate(captions):
        (tw, th), _ = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, 0.45, 1)
        x = k * cell
        cv2.rectangle(out, (x, cell - th - 6), (x + tw + 6, cell), (0, 0, 0), -1)
        cv2.putText(out, text, (x + 3, cell - 4), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (255, 255, 255), 1, cv2.LINE_AA)
    return out
