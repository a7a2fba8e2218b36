"""Pascal VOC average precision, by its official (VOC2010+) definition.

Per class: detections sorted by score; each is a true positive when its best-overlapping
ground truth of that class (IoU >= threshold) is not yet matched; a match to a
"difficult" ground truth (or a crowd region) counts neither way; recall is over
non-difficult ground truth. AP is the area under the precision envelope (all-point
interpolation). mAP averages classes that have ground truth. IoU is on continuous
coordinates (no VOC "+1" pixel convention), like COCO.
"""

from __future__ import annotations

from collections import defaultdict

import numpy as np

from detectlab.boxes import iou_matrix


def average_precision(recall: np.ndarray, precision: np.ndarray) -> float:
    """Area under the monotone precision envelope of a precision/recall curve."""
    mrec = np.concatenate([[0.0], recall, [1.0]])
    mpre = np.concatenate([[0.0], precision, [0.0]])
    mpre = np.maximum.accumulate(mpre[::-1])[::-1]
    steps = np.nonzero(mrec[1:] != mrec[:-1])[0]
    return float(np.sum((mrec[steps + 1] - mrec[steps]) * mpre[steps + 1]))


def voc_map(coco_gt, results: list[dict], iou_type: str = "bbox", iou_threshold: float = 0.5) -> dict:
    """``{"map": float, "per_class": {category_id: AP}}`` for COCO-format results."""
    gt_by_key: dict = defaultdict(list)
    for ann in coco_gt.dataset["annotations"]:
        gt_by_key[(ann["image_id"], ann["category_id"])].append(ann)
    dets_by_cat: dict = defaultdict(list)
    for r in results:
        dets_by_cat[r["category_id"]].append(r)

    per_class = {}
    for cat_id in coco_gt.getCatIds():
        positives = sum(
            1
            for (img, cat), anns in gt_by_key.items()
            if cat == cat_id
            for a in anns
            if not _ignored(a)
        )
        if positives == 0:
            continue
        dets = sorted(dets_by_cat.get(cat_id, []), key=lambda r: -r["score"])
        per_class[cat_id] = _class_ap(dets, gt_by_key, cat_id, positives, iou_type, iou_threshold, coco_gt)
    values = list(per_class.values())
    return {"map": float(np.mean(values)) if values else 0.0, "per_class": per_class}


def _ignored(ann: dict) -> bool:
    return bool(ann.get("difficult", 0)) or bool(ann.get("iscrowd", 0))


def _class_ap(dets, gt_by_key, cat_id, positives, iou_type, threshold, coco_gt) -> float:
    if not dets:
        return 0.0
    by_image: dict = defaultdict(list)
    for k, d in enumerate(dets):
        by_image[d["image_id"]].append(k)
    outcome = np.zeros(len(dets), np.int8)  # 1 true positive, -1 false positive, 0 ignored
    for image_id, indices in by_image.items():
        anns = gt_by_key.get((image_id, cat_id), [])
        if not anns:
            outcome[indices] = -1
            continue
        overlaps = _overlaps([dets[k] for k in indices], anns, iou_type, coco_gt, image_id)
        ignored = np.array([_ignored(a) for a in anns])
        matched = np.zeros(len(anns), bool)
        for row, k in enumerate(indices):  # greedy by score: `indices` are in score order
            j = int(np.argmax(overlaps[row]))
            if overlaps[row, j] < threshold:
                outcome[k] = -1
            elif ignored[j]:
                outcome[k] = 0
            elif not matched[j]:
                matched[j] = True
                outcome[k] = 1
            else:
                outcome[k] = -1
    kept = outcome != 0
    tp = np.cumsum(outcome[kept] == 1)
    fp = np.cumsum(outcome[kept] == -1)
    recall = tp / positives
    precision = tp / np.maximum(tp + fp, 1e-12)
    return average_precision(recall, precision)


def _overlaps(dets, anns, iou_type, coco_gt, image_id) -> np.ndarray:
    if iou_type == "segm":
        from pycocotools import mask as mask_utils

        gt_rles = [coco_gt.annToRLE(a) for a in anns]
        dt_rles = [d["segmentation"] for d in dets]
        return np.asarray(mask_utils.iou(dt_rles, gt_rles, [0] * len(gt_rles)), np.float64).reshape(len(dets), len(anns))
    to_yxyx = lambda b: [b[1], b[0], b[1] + b[3], b[0] + b[2]]  # noqa: E731
    return iou_matrix(np.array([to_yxyx(d["bbox"]) for d in dets]), np.array([to_yxyx(a["bbox"]) for a in anns]))
