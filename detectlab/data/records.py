"""Dataset records: the one in-memory form every importer produces.

Conventions (used everywhere inside detectlab):

- ``boxes``: ``(N, 4) float32``, ``y1, x1, y2, x2`` in pixels of the original image; the
  box covers ``[x1, x2) x [y1, y2)``, so a COCO ``[x, y, w, h]`` is ``[y, x, y+h, x+w]``.
- ``class_ids``: ``(N,) int32``, contiguous ``0 .. num_classes-1`` (no background slot);
  ``DetectionDataset.category_ids[k]`` is the COCO category id of class ``k``.
- images: ``uint8 (H, W, 3)`` RGB.
"""

from __future__ import annotations

import contextlib
import io
import os
from dataclasses import dataclass, field

import cv2
import numpy as np

from detectlab.errors import DataError

cv2.setNumThreads(0)  # the loader parallelises across processes, not inside OpenCV


@dataclass
class ImageRecord:
    """One image and its instances."""

    image_id: int
    path: str
    width: int
    height: int
    boxes: np.ndarray  # (N, 4) float32, y1 x1 y2 x2, pixels
    class_ids: np.ndarray  # (N,) int32, contiguous class index
    iscrowd: np.ndarray = None  # (N,) bool: crowd regions (ignored as targets)
    difficult: np.ndarray = None  # (N,) bool: VOC "difficult" (ignored by VOC AP)
    segmentations: list | None = None  # N COCO segmentations (polygons or RLE), or None
    annotation_ids: np.ndarray = None  # (N,) int64, for error messages

    def __post_init__(self):
        n = len(self.boxes)
        self.boxes = np.asarray(self.boxes, np.float32).reshape(n, 4)
        self.class_ids = np.asarray(self.class_ids, np.int32).reshape(n)
        self.iscrowd = _flags(self.iscrowd, n)
        self.difficult = _flags(self.difficult, n)
        if self.annotation_ids is None:
            self.annotation_ids = np.arange(n, dtype=np.int64)

    @property
    def num_instances(self) -> int:
        return len(self.boxes)


def _flags(values, n: int) -> np.ndarray:
    return np.zeros(n, bool) if values is None else np.asarray(values, bool).reshape(n)


@dataclass
class DetectionDataset:
    """Images with instances, plus the class list and where they came from.

    ``annotation_file`` is the COCO JSON the records were read from (importers of other
    formats write one), used as ground truth by :mod:`detectlab.evaluation`.
    """

    records: list[ImageRecord]
    class_names: list[str]
    category_ids: list[int]
    annotation_file: str | None = None
    _coco: object = field(default=None, repr=False)

    def __len__(self) -> int:
        return len(self.records)

    def __getitem__(self, index: int) -> ImageRecord:
        return self.records[index]

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def load_image(self, index: int) -> np.ndarray:
        """The image of record ``index``: ``uint8 (H, W, 3)`` RGB."""
        return read_image(self.records[index])

    def load_masks(self, index: int) -> np.ndarray:
        """Instance masks of record ``index``: ``uint8 (N, H, W)`` of 0/1."""
        return decode_masks(self.records[index])

    def class_counts(self) -> np.ndarray:
        """``(num_classes,) int64``: non-crowd instances per class."""
        counts = np.zeros(self.num_classes, np.int64)
        for r in self.records:
            np.add.at(counts, r.class_ids[~r.iscrowd], 1)
        return counts

    def head(self, count: int) -> "DetectionDataset":
        """The first ``count`` records, with the ground truth restricted to their images."""
        return self if count >= len(self) else self.subset(self.records[:count])

    def subset(self, records: list[ImageRecord]) -> "DetectionDataset":
        """These ``records`` only, with a ground truth holding only their images."""
        keep = {r.image_id for r in records}
        data = self.coco().dataset if self.annotation_file or self._coco is not None else None
        out = DetectionDataset(list(records), self.class_names, self.category_ids, self.annotation_file)
        if data is not None:
            out._coco = quiet_coco({
                **data,
                "images": [i for i in data["images"] if i["id"] in keep],
                "annotations": [a for a in data["annotations"] if a["image_id"] in keep],
            })
        return out

    def coco(self):
        """The ground truth as a ``pycocotools.coco.COCO`` object (cached)."""
        if self._coco is None:
            if self.annotation_file is None:
                raise DataError("this dataset has no COCO annotation file to evaluate against")
            self._coco = quiet_coco(self.annotation_file)
        return self._coco


def quiet_coco(source):
    """``pycocotools.coco.COCO`` from a path or a dict, without its progress prints, ready for
    ``COCOeval``: an annotation without ``iscrowd`` gets 0 and one without ``area`` the area of
    its mask, else of its box (``COCOeval`` reads both and ended in a ``KeyError`` on COCO files
    that leave them out, which :func:`detectlab.data.coco.load_coco` accepts). A path is read
    as :func:`detectlab.utils.read_json` reads user files (UTF-8, or UTF-16 with its mark)."""
    from pycocotools.coco import COCO

    if not isinstance(source, dict):
        from detectlab.utils import read_json

        source = read_json(source, DataError)
    with contextlib.redirect_stdout(io.StringIO()):
        coco = COCO()
        coco.dataset = source
        coco.createIndex()
    for ann in source.get("annotations", []):
        ann.setdefault("iscrowd", 0)
        if "area" not in ann:
            if ann.get("segmentation") and ann["image_id"] in coco.imgs:
                from pycocotools import mask as mask_utils

                ann["area"] = float(mask_utils.area(coco.annToRLE(ann)))
            else:
                w, h = ann["bbox"][2:4]
                ann["area"] = float(w) * float(h)
    return coco


def read_image(record: ImageRecord) -> np.ndarray:
    """Decode an image file to RGB, checking it matches the size in the annotations.

    The EXIF rule (:mod:`detectlab.data.image_header`): the EXIF orientation is applied, so
    the image, its annotations and ``width``/``height`` are as a viewer shows them.
    """
    image = decode_rgb(record.path)
    h, w = image.shape[:2]
    if (w, h) != (record.width, record.height):
        raise DataError(
            f"{record.path}: image is {w}x{h} but the annotations say {record.width}x{record.height}"
        )
    return image


def decode_rgb(path: str | os.PathLike) -> np.ndarray:
    """``uint8 (H, W, 3)`` RGB pixels of an image file, EXIF orientation applied (the one rule
    of the training loader, ``evaluate.py`` and ``predict.py``)."""
    from detectlab.data.image_header import truncated

    if not os.path.isfile(path):
        raise DataError(f"{path}: file not found")
    problem = truncated(str(path))  # OpenCV would decode a cut JPEG half grey, with only libjpeg's warning
    if problem:
        raise DataError(f"{path}: {problem}")
    image = cv2.imread(str(path), cv2.IMREAD_COLOR)  # OpenCV's default applies the orientation
    if image is None:
        raise DataError(f"{path}: cannot decode (corrupt or not an image)")
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


def decode_masks(record: ImageRecord) -> np.ndarray:
    """COCO polygons / RLE of a record -> ``uint8 (N, H, W)`` binary masks."""
    from pycocotools import mask as mask_utils

    h, w = record.height, record.width
    if record.num_instances == 0:
        return np.zeros((0, h, w), np.uint8)
    if record.segmentations is None:
        raise DataError(f"{record.path}: the annotations carry no masks")
    masks = np.zeros((record.num_instances, h, w), np.uint8)
    for k, seg in enumerate(record.segmentations):
        if not seg:
            continue
        if isinstance(seg, list):  # polygons
            rle = mask_utils.merge(mask_utils.frPyObjects(seg, h, w))
        elif isinstance(seg.get("counts"), list):  # uncompressed RLE
            rle = mask_utils.frPyObjects(seg, h, w)
        else:
            rle = seg
        masks[k] = mask_utils.decode(rle)
    return masks
