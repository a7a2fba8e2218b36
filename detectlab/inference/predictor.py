"""Run a trained model on images: letterbox in, detections in original pixels out.

Works for any number of images (batched internally); the family's
``model.inference_model(score, nms, max)`` supplies decoding and NMS in-graph.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import cv2
import numpy as np
import tensorflow as tf

from detectlab.data.records import DetectionDataset
from detectlab.data.transforms import letterbox
from detectlab.errors import DataError


@dataclass
class Detections:
    """Detections of one image, in its original pixels.

    ``boxes (K, 4) float32`` y1 x1 y2 x2; ``scores (K,)``; ``class_ids (K,) int32``
    (contiguous class index); ``masks`` ``uint8 (K, H, W)`` or None.
    """

    boxes: np.ndarray
    scores: np.ndarray
    class_ids: np.ndarray
    masks: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.scores)

    def above(self, threshold: float) -> "Detections":
        """The detections scoring at least ``threshold``."""
        keep = self.scores >= threshold
        return Detections(self.boxes[keep], self.scores[keep], self.class_ids[keep], None if self.masks is None else self.masks[keep])


class Predictor:
    def __init__(self, model, image_size: int, score_threshold: float = 0.3, nms_threshold: float = 0.45, max_detections: int = 100, batch_size: int = 8):
        self.image_size = int(image_size)
        self.batch_size = int(batch_size)
        self.score_threshold, self.nms_threshold, self.max_detections = float(score_threshold), float(nms_threshold), int(max_detections)
        self.network = model.inference_model(score_threshold, nms_threshold, max_detections)
        spec = tf.TensorSpec([None, self.image_size, self.image_size, 3], tf.float32)
        self._run = tf.function(lambda x: self.network(x, training=False), input_signature=[spec])

    def letterbox(self, image: np.ndarray) -> tuple[np.ndarray, tuple]:
        if image.ndim != 3 or image.shape[2] != 3 or min(image.shape[:2]) < 1:
            raise DataError(f"expected an RGB image of at least 1x1 pixels (H, W, 3), got shape {tuple(image.shape)}")
        return letterbox(image, self.image_size)

    def predict(self, images: list[np.ndarray]) -> list[Detections]:
        """``images``: RGB ``uint8 (H, W, 3)`` arrays of any sizes."""
        out = []
        for start in range(0, len(images), self.batch_size):
            batch = [self.letterbox(im) for im in images[start : start + self.batch_size]]
            out += self._predict_letterboxed(batch, [im.shape[:2] for im in images[start : start + self.batch_size]])
        return out

    def predict_dataset(self, dataset: DetectionDataset, limit: int | None = None) -> list[Detections]:
        """Detections for every record (in order), loading images in background threads."""
        count = len(dataset) if limit is None else min(limit, len(dataset))
        chunks = [range(s, min(s + self.batch_size, count)) for s in range(0, count, self.batch_size)]

        def load(chunk):
            images = [dataset.load_image(i) for i in chunk]
            return [self.letterbox(im) for im in images], [im.shape[:2] for im in images]

        out: list[Detections] = []
        with ThreadPoolExecutor(max_workers=2) as pool:
            for batch, shapes in pool.map(load, chunks):
                out += self._predict_letterboxed(batch, shapes)
        return out

    def _predict_letterboxed(self, batch, shapes) -> list[Detections]:
        x = np.stack([im for im, _ in batch]).astype(np.float32)
        result = {k: v.numpy() for k, v in self._run(x).items()}
        out = []
        for k, ((_, transform), (h, w)) in enumerate(zip(batch, shapes)):
            n = int(result["valid"][k])
            boxes = unletterbox(result["boxes"][k, :n] * self.image_size, transform, (h, w))
            masks = paste_masks(result["masks"][k, :n], boxes, (h, w)) if "masks" in result else None
            out.append(Detections(boxes, result["scores"][k, :n], result["class_ids"][k, :n].astype(np.int32), masks))
        return out


def unletterbox(boxes: np.ndarray, transform, shape_hw) -> np.ndarray:
    """Map y1 x1 y2 x2 boxes from the letterboxed frame back to the original image."""
    sy, sx, ty, tx = transform
    out = np.empty_like(boxes, dtype=np.float32)
    out[:, [0, 2]] = (boxes[:, [0, 2]] - ty) / sy
    out[:, [1, 3]] = (boxes[:, [1, 3]] - tx) / sx
    h, w = shape_hw
    out[:, [0, 2]] = np.clip(out[:, [0, 2]], 0, h)
    out[:, [1, 3]] = np.clip(out[:, [1, 3]], 0, w)
    return out


def paste_masks(masks: np.ndarray, boxes: np.ndarray, shape_hw, threshold: float = 0.5) -> np.ndarray:
    """``masks (K, m, m)`` probabilities in each box's frame, ``boxes (K, 4)`` y1 x1 y2 x2 in
    the image's pixels -> full-size ``uint8 (K, H, W)`` binary masks."""
    h, w = shape_hw
    out = np.zeros((len(masks), h, w), np.uint8)
    for k, (y1, x1, y2, x2) in enumerate(boxes):
        top, left = int(np.floor(y1)), int(np.floor(x1))
        bottom, right = max(int(np.ceil(y2)), top + 1), max(int(np.ceil(x2)), left + 1)
        resized = cv2.resize(masks[k].astype(np.float32), (right - left, bottom - top), interpolation=cv2.INTER_LINEAR)
        t, l = max(top, 0), max(left, 0)
        b, r = min(bottom, h), min(right, w)
        if b > t and r > l:
            out[k, t:b, l:r] = resized[t - top : b - top, l - left : r - left] >= threshold
    return out


def to_coco_results(dataset: DetectionDataset, detections: list[Detections]) -> list[dict]:
    """COCO results list (``bbox`` as x, y, w, h; original category ids; RLE masks)."""
    return [{"image_id": record.image_id, **entry}
            for record, det in zip(dataset.records, detections) for entry in coco_entries(det, dataset.category_ids)]


def coco_entries(det: Detections, category_ids) -> list[dict]:
    """One image's detections as COCO result entries (without ``image_id``): ``category_id``
    (the data's own id), ``bbox`` x, y, w, h, ``score``, and ``segmentation`` RLE with masks."""
    entries = []
    for k in range(len(det)):
        y1, x1, y2, x2 = (float(v) for v in det.boxes[k])
        entry = {
            "category_id": category_ids[int(det.class_ids[k])],
            "bbox": [round(x1, 2), round(y1, 2), round(x2 - x1, 2), round(y2 - y1, 2)],
            "score": round(float(det.scores[k]), 5),
        }
        if det.masks is not None:
            entry["segmentation"] = mask_rle(det.masks[k])
        entries.append(entry)
    return entries


def mask_rle(mask: np.ndarray) -> dict:
    """``(H, W)`` binary mask -> COCO RLE ``{"size": [H, W], "counts": str}`` (JSON-ready)."""
    from pycocotools import mask as mask_utils

    rle = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))
    rle["counts"] = rle["counts"].decode("ascii")
    return rle
