"""Mosaic, MixUp and the random affine (rotation, scale, translation) of the small-data recipes.

Geometry (continuous pixel coordinates, pixel centres at ``i + 0.5``, as in
:mod:`detectlab.data.transforms`): every source image is first letterboxed so its longer side
is ``S`` (the model's input size). A **mosaic** places four of them on a ``2S x 2S`` canvas
around a random centre ``(xc, yc)`` in ``[S/2, 3S/2]``, each touching the centre with one
corner (the anchor image at a random one of the four places, as Ultralytics does). The
**random affine** then maps the canvas onto the ``S x S`` input: centre to the origin,
rotation by ``+-degrees``, scale ``s`` drawn from ``augment.scale``, and the origin to
``(0.5 + t) S`` with ``t`` in ``+-translate``. Each image is warped once, straight from its
source pixels with the product of the two maps; a single image (no mosaic) is letterboxed
onto an ``S x S`` canvas and takes the same affine about its centre.

Boxes follow the corners (or, with instance masks, the warped mask: a rotated box is then
tight and box and mask agree), are clipped to the input, and a box is **dropped** when its
visible part is under 2 px wide or high or under 10% of its transformed area (it is cut
off), as Ultralytics' ``box_candidates`` does; the number dropped is counted (boxes wholly
outside the input are not: they are simply not in view).
**MixUp** blends the sample with a second one (another mosaic) at a ratio drawn from
``Beta(32, 32)`` and keeps the instances of both.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from detectlab.data.transforms import GREY

MIN_SIDE = 2.0  # px: narrower or lower boxes are dropped
MIN_VISIBLE = 0.1  # visible share of a box's transformed area below which it is dropped
MIXUP_BETA = 32.0


@dataclass
class Instances:
    """Images and their instances in one pixel frame (``boxes`` y1 x1 y2 x2)."""

    image: np.ndarray  # uint8 (H, W, 3)
    boxes: np.ndarray  # (N, 4) float32
    class_ids: np.ndarray  # (N,) int32
    iscrowd: np.ndarray  # (N,) bool
    masks: np.ndarray | None = None  # uint8 (N, H, W) or None
    dropped: int = 0  # boxes dropped as cut off (see the module docstring)


def letterbox_matrix(shape_hw, size: float, origin=(0.0, 0.0)) -> np.ndarray:
    """``3 x 3`` map of an image's pixels to a letterbox whose longer side is ``size``, with
    the image's top-left corner at ``origin`` (x, y)."""
    h, w = shape_hw
    r = size / max(h, w)
    return np.array([[r, 0, origin[0]], [0, r, origin[1]], [0, 0, 1]], np.float64)


def mosaic_placements(shapes_hw, size: int, centre) -> list[np.ndarray]:
    """Letterbox maps of four images onto the ``2S`` canvas, touching ``centre`` (x, y) with
    their bottom-right, bottom-left, top-right and top-left corners in that order."""
    xc, yc = centre
    out = []
    for k, (h, w) in enumerate(shapes_hw):
        r = size / max(h, w)
        x = xc - w * r if k in (0, 2) else xc
        y = yc - h * r if k in (0, 1) else yc
        out.append(letterbox_matrix((h, w), size, (x, y)))
    return out


def affine_matrix(size: int, canvas: float, degrees: float = 0.0, scale: float = 1.0, translate=(0.0, 0.0)) -> np.ndarray:
    """``3 x 3`` map of a ``canvas``-sided square onto the ``size`` input: its centre to the
    origin, rotation by ``degrees`` (counter-clockwise on screen), scale, then the origin to
    ``((0.5 + tx) size, (0.5 + ty) size)``."""
    a = np.deg2rad(degrees)
    c, s = np.cos(a) * scale, np.sin(a) * scale
    centre = np.array([[1, 0, -canvas / 2], [0, 1, -canvas / 2], [0, 0, 1]], np.float64)
    rotate = np.array([[c, s, 0], [-s, c, 0], [0, 0, 1]], np.float64)
    shift = np.array([[1, 0, (0.5 + translate[0]) * size], [0, 1, (0.5 + translate[1]) * size], [0, 0, 1]], np.float64)
    return shift @ rotate @ centre


def _warp(image, matrix, size: int, fill, interpolation) -> np.ndarray:
    # continuous coordinates -> OpenCV's (pixel centres at integers): u' = A u + t becomes
    # A (p + 0.5) + t - 0.5
    m = matrix[:2].copy()
    m[:, 2] += m[:, :2] @ np.array([0.5, 0.5]) - 0.5
    return cv2.warpAffine(image, m, (size, size), flags=interpolation, borderMode=cv2.BORDER_CONSTANT, borderValue=fill)


def _corner_boxes(boxes: np.ndarray, matrix: np.ndarray) -> np.ndarray:
    """``(N, 4)`` y1 x1 y2 x2 -> the boxes enclosing their mapped corners."""
    if not len(boxes):
        return np.zeros((0, 4), np.float64)
    y1, x1, y2, x2 = boxes.T.astype(np.float64)
    xs = np.stack([x1, x2, x2, x1], 1)
    ys = np.stack([y1, y1, y2, y2], 1)
    mx = matrix[0, 0] * xs + matrix[0, 1] * ys + matrix[0, 2]
    my = matrix[1, 0] * xs + matrix[1, 1] * ys + matrix[1, 2]
    return np.stack([my.min(1), mx.min(1), my.max(1), mx.max(1)], 1)


def _mask_boxes(masks: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Tight ``(N, 4)`` boxes of binary masks (pixel edges) and which masks are non-empty."""
    rows, cols = masks.any(2), masks.any(1)
    present = rows.any(1)
    first = lambda a: a.argmax(1)  # noqa: E731
    last = lambda a: a.shape[1] - a[:, ::-1].argmax(1)  # noqa: E731
    return np.stack([first(rows), first(cols), last(rows), last(cols)], 1).astype(np.float64), present


def compose(parts: list[Instances], matrices: list[np.ndarray], size: int) -> Instances:
    """Warp each part with its ``3 x 3`` matrix onto one ``size x size`` image (the parts must
    not overlap there: later ones cover earlier ones), map and clip their boxes, drop the
    boxes that are cut off and count them."""
    image = np.full((size, size, 3), GREY, np.uint8)
    with_masks = parts[0].masks is not None
    boxes, keep_all, masks, dropped = [], [], [], 0
    for part, matrix in zip(parts, matrices):
        h, w = part.image.shape[:2]
        interpolation = cv2.INTER_AREA if abs(np.linalg.det(matrix[:2, :2])) < 0.25 else cv2.INTER_LINEAR
        warped = _warp(part.image, matrix, size, (GREY,) * 3, interpolation)
        footprint = _warp(np.ones((h, w), np.uint8), matrix, size, 0, cv2.INTER_NEAREST).astype(bool)
        image[footprint] = warped[footprint]
        whole = _corner_boxes(part.boxes, matrix)
        if with_masks:
            part_masks = np.stack([_warp(m, matrix, size, 0, cv2.INTER_NEAREST) for m in part.masks]) if len(part.boxes) \
                else np.zeros((0, size, size), np.uint8)
            tight, present = _mask_boxes(part_masks)
            visible = np.where(present[:, None], tight, np.clip(whole, 0, size))
            masks.append(part_masks)
        else:
            visible = np.clip(whole, 0, size)
        vh, vw = visible[:, 2] - visible[:, 0], visible[:, 3] - visible[:, 1]
        source = part.boxes.astype(np.float64)
        area = np.maximum((source[:, 2] - source[:, 0]) * (source[:, 3] - source[:, 1]) * abs(np.linalg.det(matrix[:2, :2])), 1e-9)
        keep = (vh >= MIN_SIDE) & (vw >= MIN_SIDE) & (vh * vw >= MIN_VISIBLE * area)
        seen = (vh > 0) & (vw > 0)
        dropped += int((seen & ~keep).sum())
        boxes.append(visible)
        keep_all.append(keep)
    keep = np.concatenate(keep_all)
    return Instances(
        image=image,
        boxes=np.concatenate(boxes).astype(np.float32)[keep].reshape(-1, 4),
        class_ids=np.concatenate([p.class_ids for p in parts]).astype(np.int32)[keep],
        iscrowd=np.concatenate([p.iscrowd for p in parts]).astype(bool)[keep],
        masks=np.concatenate(masks)[keep] if with_masks else None,
        dropped=dropped,
    )


def mixup(a: Instances, b: Instances, ratio: float) -> Instances:
    """``ratio * a + (1 - ratio) * b`` with the instances of both."""
    image = np.clip(a.image.astype(np.float32) * ratio + b.image.astype(np.float32) * (1 - ratio) + 0.5, 0, 255)
    return Instances(
        image=image.astype(np.uint8),
        boxes=np.concatenate([a.boxes, b.boxes]),
        class_ids=np.concatenate([a.class_ids, b.class_ids]),
        iscrowd=np.concatenate([a.iscrowd, b.iscrowd]),
        masks=None if a.masks is None else np.concatenate([a.masks, b.masks]),
        dropped=a.dropped + b.dropped,
    )


class MosaicAugment:
    """The composition step of ``augment.mosaic`` / ``mixup`` / ``degrees`` / ``translate``
    for one sample: ``load(index) -> Instances`` reads a source image; :meth:`__call__` gives
    the ``size x size`` composite of the anchor ``index`` (HSV and flips come after it)."""

    def __init__(self, augment, num_images: int):
        self.mosaic, self.mixup = float(augment.mosaic), float(augment.mixup)
        self.degrees, self.translate = float(augment.degrees), float(augment.translate)
        self.scale = tuple(float(s) for s in augment.scale)
        self.num_images = int(num_images)

    def __call__(self, load, index: int, size: int, rng: np.random.Generator, mosaic_on: bool = True) -> Instances:
        sample = self._one(load, index, size, rng, mosaic_on)
        if mosaic_on and self.mixup and rng.random() < self.mixup:
            other = self._one(load, int(rng.integers(self.num_images)), size, rng, mosaic_on)
            sample = mixup(sample, other, float(rng.beta(MIXUP_BETA, MIXUP_BETA)))
        return sample

    def _one(self, load, index: int, size: int, rng: np.random.Generator, mosaic_on: bool) -> Instances:
        if mosaic_on and self.mosaic and rng.random() < self.mosaic:
            indices = [index, *(int(i) for i in rng.integers(self.num_images, size=3))]
            indices = [indices[k] for k in rng.permutation(4)]  # the anchor at a random corner
            parts = [load(i) for i in indices]
            centre = rng.uniform(0.5 * size, 1.5 * size, size=2)
            placements = mosaic_placements([p.image.shape[:2] for p in parts], size, centre)
            canvas = 2.0 * size
        else:
            parts = [load(index)]
            h, w = parts[0].image.shape[:2]
            r = size / max(h, w)
            placements = [letterbox_matrix((h, w), size, ((size - w * r) / 2, (size - h * r) / 2))]
            canvas = float(size)
        affine = affine_matrix(size, canvas, rng.uniform(-self.degrees, self.degrees), rng.uniform(*self.scale),
                               rng.uniform(-self.translate, self.translate, size=2))
        return compose(parts, [affine @ p for p in placements], size)
