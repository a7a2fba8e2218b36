"""COCO evaluation with pycocotools, plus VOC mAP@0.5, as one ``metrics`` dict.

``metrics[iou_type]`` (``bbox``, and ``segm`` when results carry masks) holds the twelve
COCO numbers under their usual names, ``per_class`` AP (0.5:0.95), AP50, AP75 and
``instances`` (non-crowd ground truth) by class name, and ``voc_map50``: VOC mAP at IoU 0.5 (all-point interpolation, "difficult" ignored).
"""

from __future__ import annotations

import contextlib
import copy
import io
import json
from pathlib import Path

import numpy as np

from detectlab.data.records import quiet_coco
from detectlab.errors import DataError
from detectlab.evaluation.voc import voc_map

COCO_STAT_NAMES = ("AP", "AP50", "AP75", "APs", "APm", "APl", "AR1", "AR10", "AR100", "ARs", "ARm", "ARl")


def evaluate_results(gt, results: list[dict], iou_types=None, max_detections: int = 100, evaluators: dict | None = None) -> dict:
    """Score COCO-format ``results`` against ground truth ``gt`` (path, dict or COCO).

    ``evaluators``: a dict that receives the finished ``COCOeval`` of each iou type (its
    ``eval["precision"]`` draws the precision/recall curves, see :mod:`.plots`).
    """
    from pycocotools.cocoeval import COCOeval

    coco_gt = gt if hasattr(gt, "getAnnIds") else quiet_coco(gt)
    results = _check_results(coco_gt, ids_by_file_name(coco_gt, results))
    if iou_types is None:
        iou_types = ["bbox"] + (["segm"] if results and all("segmentation" in r for r in results) else [])
    metrics: dict = {"num_images": len(coco_gt.getImgIds()), "num_detections": len(results)}
    for iou_type in iou_types:
        if not results:
            metrics[iou_type] = _empty_metrics(coco_gt)
            continue
        if iou_type == "segm" and not all("segmentation" in r for r in results):
            raise DataError("segm evaluation needs a 'segmentation' in every result")
        with contextlib.redirect_stdout(io.StringIO()):
            coco_dt = coco_gt.loadRes(_for_iou_type(results, iou_type))
            evaluator = COCOeval(coco_gt, coco_dt, iou_type)
            evaluator.params.maxDets = [1, 10, max_detections]
            evaluator.evaluate()
            evaluator.accumulate()
            evaluator.summarize()
        stats = {name: float(v) for name, v in zip(COCO_STAT_NAMES, evaluator.stats)}
        stats["per_class"] = _per_class(coco_gt, evaluator)
        if evaluators is not None:
            evaluators[iou_type] = evaluator
        stats["voc_map50"] = voc_map(coco_gt, results, iou_type=iou_type, iou_threshold=0.5)["map"]
        metrics[iou_type] = stats
    return metrics


def ids_by_file_name(coco_gt, results: list[dict]) -> list[dict]:
    """``results`` with the ground truth's ``image_id``s: when every result carries the
    ``file_name`` of its image (``tools/predict.py`` writes it) and those name ground-truth
    images (the entry whose ``file_name`` ends the same way), their ids are used wherever the
    results' own differ (predict.py without ``--data`` numbers images by position), and the
    log says so. Otherwise ``results`` as they are (:func:`_check_results` names an unknown id)."""
    from detectlab.data.coco import match_file_names
    from detectlab.utils import log

    if not results or not all(isinstance(r, dict) and isinstance(r.get("file_name"), str) for r in results):
        return results
    names = sorted({r["file_name"] for r in results})
    try:
        ids = dict(zip(names, match_file_names(names, list(coco_gt.imgs.values()), "the ground truth")))
    except DataError as exc:
        if all(r.get("image_id") in coco_gt.imgs for r in results):
            return results  # the ids are the ground truth's; the file names are some other path
        raise DataError(f"results by file_name: {exc}") from None
    changed = sum(r.get("image_id") != ids[r["file_name"]] for r in results)
    if not changed:
        return results
    log.info("%d of %d results had image_ids that are not their images' in the ground truth: matched by file_name "
             "(%d images)", changed, len(results), len(names))
    return [{**r, "image_id": ids[r["file_name"]]} for r in results]


def _check_results(coco_gt, results: list[dict]) -> list[dict]:
    known_images = set(coco_gt.getImgIds())
    known_categories = set(coco_gt.getCatIds())
    for k, r in enumerate(results):
        if not isinstance(r, dict):
            raise DataError(f"result {k}: expected an object {{image_id, category_id, bbox, score}}, got {type(r).__name__}")
        for key in ("image_id", "category_id", "score"):
            if key not in r:
                raise DataError(f"result {k}: missing '{key}'")
        if "bbox" not in r and "segmentation" not in r:
            raise DataError(f"result {k}: needs a 'bbox' or a 'segmentation'")
        if not _is_number(r["score"]):
            raise DataError(f"result {k}: 'score' must be a number, got {r['score']!r}")
        bbox = r.get("bbox")
        if bbox is not None and not (isinstance(bbox, list) and len(bbox) == 4 and all(_is_number(v) for v in bbox)):
            raise DataError(f"result {k}: 'bbox' must be 4 numbers [x, y, w, h], got {bbox!r}")
        if r["image_id"] not in known_images:
            raise DataError(f"result {k}: image_id {r['image_id']} is not in the ground truth (results of "
                            "tools/predict.py: pass the ground truth to it with --data, so it writes its ids)")
        if r["category_id"] not in known_categories:
            raise DataError(f"result {k}: category_id {r['category_id']} is not in the ground truth")
        seg = r.get("segmentation")
        if seg is not None and not (isinstance(seg, dict) and {"size", "counts"} <= set(seg)):
            raise DataError(f"result {k}: 'segmentation' must be RLE {{size, counts}} (as pycocotools writes it)")
    return copy.deepcopy(results)  # pycocotools' loadRes adds fields to what it is given


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and np.isfinite(value)


def _for_iou_type(results: list[dict], iou_type: str) -> list[dict]:
    """pycocotools derives ``bbox`` from ``segmentation`` when both are present for segm."""
    if iou_type == "bbox":
        return [{k: v for k, v in r.items() if k != "segmentation"} for r in results]
    return [{k: v for k, v in r.items() if k != "bbox"} for r in results]


def _per_class(coco_gt, evaluator) -> dict:
    precision = evaluator.eval["precision"]  # (iou thresholds, recall, classes, areas, max dets)
    thresholds = list(np.round(evaluator.params.iouThrs, 2))
    out = {}
    for k, cat_id in enumerate(evaluator.params.catIds):
        name = coco_gt.cats[int(cat_id)].get("name", str(cat_id))
        out[name] = {
            "AP": _mean_defined(precision[:, :, k, 0, -1]),
            "AP50": _mean_defined(precision[thresholds.index(0.5), :, k, 0, -1]),
            "AP75": _mean_defined(precision[thresholds.index(0.75), :, k, 0, -1]),
            "instances": _instances(coco_gt, cat_id),
        }
    return out


def _mean_defined(p: np.ndarray) -> float:
    """COCO's AP: the mean of the defined (> -1) precision values; -1 when none is."""
    return float(np.mean(p[p > -1])) if (p > -1).any() else -1.0


def _instances(coco_gt, cat_id) -> int:
    return sum(1 for a in coco_gt.loadAnns(coco_gt.getAnnIds(catIds=[cat_id])) if not a.get("iscrowd", 0))


def _empty_metrics(coco_gt) -> dict:
    stats = {name: 0.0 for name in COCO_STAT_NAMES}
    stats["per_class"] = {c["name"]: {"AP": 0.0, "AP50": 0.0, "AP75": 0.0, "instances": _instances(coco_gt, c["id"])}
                          for c in coco_gt.cats.values()}
    stats["voc_map50"] = 0.0
    return stats


def load_results(path) -> list[dict]:
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: detections file not found")
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise DataError(f"{path}: invalid JSON at line {exc.lineno} column {exc.colno}: {exc.msg}") from None
    if not isinstance(data, list):
        raise DataError(f"{path}: expected a COCO results list [{{image_id, category_id, bbox, score}}, ...]")
    return data


def format_metrics(metrics: dict) -> str:
    """A short human-readable table of the main numbers."""
    lines = []
    for iou_type in ("bbox", "segm"):
        m = metrics.get(iou_type)
        if not m:
            continue
        head = " ".join(f"{k}={m[k]:.3f}" for k in ("AP", "AP50", "AP75", "APs", "APm", "APl"))
        lines.append(f"{iou_type}: {head} VOC_mAP50={m['voc_map50']:.3f}")
        for name, v in m["per_class"].items():
            lines.append(f"  {name:>20s}: AP={v['AP']:.3f} AP50={v['AP50']:.3f} AP75={v['AP75']:.3f} instances={v['instances']}")
    return "\n".join(lines)
