"""Image + boxes + masks transforms, built on albumentations.

Two geometric transforms are ours (as albumentations ``DualTransform`` subclasses, so
albumentations keeps boxes, masks and labels in sync and filters degenerate boxes):

- :class:`Letterbox`: scale to fit a ``size x size`` canvas, keep aspect, centre on grey.
- :class:`RandomScalePlace`: the YOLOv3 reference geometry: aspect jitter, random scale
  of the longer side relative to the canvas, random placement (parts may leave the canvas).

Both are one affine warp ``u' = s * u + t`` on continuous pixel coordinates (pixel centres
at ``i + 0.5``), recorded in :class:`Sample.transform` so detections map back exactly.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import albumentations as A
import cv2
import numpy as np

from detectlab.config import AugmentConfig

GREY = 128


@dataclass
class Sample:
    """An image ready for a model, with its instances in the same pixel frame.

    ``transform`` = ``(sy, sx, ty, tx)``: a point ``(y, x)`` of the original image is at
    ``(sy*y + ty, sx*x + tx)`` in ``image`` (a mosaic or rotated sample has no such map: its
    transform is the identity and ``original_size`` its own size).
    """

    image: np.ndarray  # uint8 (H, W, 3) RGB
    boxes: np.ndarray  # (N, 4) float32 y1 x1 y2 x2, pixels of `image`
    class_ids: np.ndarray  # (N,) int32
    iscrowd: np.ndarray  # (N,) bool
    masks: np.ndarray | None  # uint8 (N, H, W) or None
    image_id: int
    transform: tuple[float, float, float, float]
    original_size: tuple[int, int]  # (height, width) before transforms
    seed: int | None = None  # this sample's seed, for random choices in target encoders
    dropped: int = 0  # boxes the mosaic / affine step cut off (detectlab.data.mosaic)


def affine_warp(image: np.ndarray, sy: float, sx: float, ty: float, tx: float, out_hw, fill, interp) -> np.ndarray:
    """Scale + translate ``image`` onto an ``out_hw`` canvas (continuous coordinates)."""
    # cv2 maps pixel centres at integer coordinates: shift the translation accordingly.
    matrix = np.array([[sx, 0, tx + 0.5 * sx - 0.5], [0, sy, ty + 0.5 * sy - 0.5]], np.float32)
    return cv2.warpAffine(
        image,
        matrix,
        (int(out_hw[1]), int(out_hw[0])),
        flags=interp,
        borderMode=cv2.BORDER_CONSTANT,
        borderValue=fill,
    )


def _interpolation(sy: float, sx: float) -> int:
    return cv2.INTER_AREA if min(abs(sx), abs(sy)) < 0.5 else cv2.INTER_LINEAR


def letterbox(image: np.ndarray, size: int) -> tuple[np.ndarray, tuple[float, float, float, float]]:
    """Letterbox without albumentations (inference): image and its ``(sy, sx, ty, tx)``."""
    p = letterbox_params(image.shape[:2], size)
    fill = (GREY,) * image.shape[2]
    out = affine_warp(image, p["sy"], p["sx"], p["ty"], p["tx"], (size, size), fill, _interpolation(p["sy"], p["sx"]))
    return out, (p["sy"], p["sx"], p["ty"], p["tx"])


class _ScaleTranslate(A.DualTransform):
    """Base for transforms that are ``u' = s * u + t`` onto a ``size x size`` canvas."""

    def __init__(self, size: int, p: float = 1.0):
        super().__init__(p=p)
        self.size = int(size)

    def apply(self, img, sy, sx, ty, tx, **params):
        fill = (GREY,) * img.shape[2] if img.ndim == 3 else GREY
        return affine_warp(img, sy, sx, ty, tx, (self.size, self.size), fill, _interpolation(sy, sx))

    def apply_to_mask(self, mask, sy, sx, ty, tx, **params):
        return affine_warp(mask, sy, sx, ty, tx, (self.size, self.size), 0, cv2.INTER_NEAREST)

    def apply_to_bboxes(self, bboxes, sy, sx, ty, tx, **params):
        # albumentations passes boxes normalised to the input image: x_min y_min x_max y_max
        h, w = params["shape"][:2]
        out = np.array(bboxes, dtype=np.float64, copy=True)
        if len(out):
            out[:, [0, 2]] = (out[:, [0, 2]] * w * sx + tx) / self.size
            out[:, [1, 3]] = (out[:, [1, 3]] * h * sy + ty) / self.size
        return out

    def apply_to_keypoints(self, keypoints, sy, sx, ty, tx, **params):
        out = np.array(keypoints, dtype=np.float64, copy=True)
        if len(out):
            out[:, 0] = out[:, 0] * sx + tx
            out[:, 1] = out[:, 1] * sy + ty
        return out

    def get_transform_init_args_names(self):
        return ("size",)


class Letterbox(_ScaleTranslate):
    """Fit the image into ``size x size`` keeping its aspect ratio, centred on grey."""

    def get_params_dependent_on_data(self, params: dict[str, Any], data: dict[str, Any]) -> dict[str, Any]:
        return letterbox_params(params["shape"][:2], self.size)


def letterbox_params(shape_hw, size: int) -> dict[str, float]:
    h, w = shape_hw
    scale = min(size / w, size / h)
    return {"sy": scale, "sx": scale, "ty": (size - h * scale) / 2, "tx": (size - w * scale) / 2}


class RandomScalePlace(_ScaleTranslate):
    """YOLOv3 reference geometry (``get_random_data``): aspect jitter, scale, placement."""

    def __init__(self, size: int, jitter: float = 0.3, scale=(0.25, 2.0), p: float = 1.0):
        super().__init__(size, p=p)
        self.jitter = float(jitter)
        self.scale = tuple(float(s) for s in scale)

    def get_params_dependent_on_data(self, params: dict[str, Any], data: dict[str, Any]) -> dict[str, Any]:
        h, w = params["shape"][:2]
        rng, j, size = self.py_random, self.jitter, self.size
        aspect = (w / h) * rng.uniform(1 - j, 1 + j) / rng.uniform(1 - j, 1 + j)
        s = rng.uniform(*self.scale)
        if aspect < 1:
            nh = s * size
            nw = nh * aspect
        else:
            nw = s * size
            nh = nw / aspect
        tx = rng.uniform(min(0.0, size - nw), max(0.0, size - nw))
        ty = rng.uniform(min(0.0, size - nh), max(0.0, size - nh))
        return {"sy": nh / h, "sx": nw / w, "ty": ty, "tx": tx}

    def get_transform_init_args_names(self):
        return ("size", "jitter", "scale")


def build_pipeline(size: int, augment: AugmentConfig | None, geometry: bool = True) -> A.Compose:
    """Training pipeline when ``augment`` is given and enabled, otherwise a letterbox.
    ``geometry=False``: flip and colour only (after the mosaic / affine step)."""
    if augment is not None and augment.enabled:
        steps = [
            *([RandomScalePlace(size, augment.jitter, augment.scale)] if geometry else []),
            A.HorizontalFlip(p=augment.hflip),
            A.ColorJitter(
                brightness=(1 / augment.value, augment.value),
                contrast=(1.0, 1.0),
                saturation=(1 / augment.saturation, augment.saturation),
                hue=(-augment.hue, augment.hue),
                p=1.0,
            ),
        ]
    else:
        steps = [Letterbox(size)]
    return A.Compose(
        steps,
        bbox_params=A.BboxParams(
            format="pascal_voc",
            label_fields=["instance_ids"],
            clip=True,
            min_width=1.0,
            min_height=1.0,
        ),
        strict=True,
        save_applied_params=True,
    )


def apply_pipeline(
    pipeline: A.Compose,
    image: np.ndarray,
    boxes: np.ndarray,
    masks: np.ndarray | None,
    seed: int | None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray | None, tuple]:
    """Run ``pipeline``; return image, kept boxes (y1x1y2x2), kept instance indices, masks
    of the kept instances, and the ``(sy, sx, ty, tx)`` geometric transform applied."""
    if seed is not None:
        pipeline.set_random_seed(int(seed))
    inputs: dict[str, Any] = {
        "image": image,
        "bboxes": boxes[:, [1, 0, 3, 2]] if len(boxes) else np.zeros((0, 4), np.float32),
        "instance_ids": np.arange(len(boxes)),
    }
    if masks is not None and len(masks):
        inputs["masks"] = masks
    out = pipeline(**inputs)
    kept = np.asarray(out["instance_ids"], np.int64).reshape(-1)
    out_boxes = np.asarray(out["bboxes"], np.float32).reshape(-1, 4)[:, [1, 0, 3, 2]]
    out_masks = None
    if masks is not None:
        h, w = out["image"].shape[:2]
        out_masks = np.asarray(out["masks"])[kept] if len(masks) else np.zeros((0, h, w), np.uint8)
    return out["image"], out_boxes, kept, out_masks, _geometry(out)


def _geometry(out: dict) -> tuple[float, float, float, float]:
    """The ``(sy, sx, ty, tx)`` of the scale/translate step, including a horizontal flip
    (which comes after it, so it mirrors the output canvas)."""
    sy, sx, ty, tx = 1.0, 1.0, 0.0, 0.0
    width = out["image"].shape[1]
    for name, params in out.get("applied_transforms", []):
        if name in ("Letterbox", "RandomScalePlace"):
            sy, sx, ty, tx = params["sy"], params["sx"], params["ty"], params["tx"]
        elif name == "HorizontalFlip":
            sx, tx = -sx, width - tx
    return (float(sy), float(sx), float(ty), float(tx))
