"""COCO evaluation with pycocotools, plus VOC mAP@0.5, as one ``metrics`` dict.

``metrics[iou_type]`` (``bbox``, and ``segm`` when results carry masks) holds the twelve
COCO numbers under their usual names, ``per_class`` AP (0.5:0.95), AP50, AP75 and
``instances`` (non-crowd ground truth) by class name, and ``voc_map50``: VOC mAP at IoU 0.5 (all-point interpolation, "difficult" ignored).
"""

from __future__ import annotations

import contextlib
import copy
import io
from pathlib import Path

import numpy as np

from detectlab.data.records import quiet_coco
from detectlab.errors import DataError
from detectlab.evaluation.voc import voc_map
from detectlab.utils import read_json

COCO_STAT_NAMES = ("AP", "AP50", "AP75", "APs", "APm", "APl", "AR1", "AR10", "AR100", "ARs", "ARm", "ARl")


def evaluate_results(gt, results: list[dict], iou_types=None, max_detections: int = 100, evaluators: dict | None = None) -> dict:
    """Score COCO-format ``results`` against ground truth ``gt`` (path, dict or COCO).

    ``evaluators``: a dict that receives the finished ``COCOeval`` of each iou type (its
    ``eval["precision"]`` draws the precision/recall curves, see :mod:`.plots`).
    """
    from pycocotools.cocoeval import COCOeval

    coco_gt = gt if hasattr(gt, "getAnnIds") else quiet_coco(gt)
    results = checked_results(coco_gt, results)
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
    log says so; results on images the ground truth does not have (a folder of every split)
    are left out and counted. When no file_name matches, ``results`` as they are if their ids
    are the ground truth's, else a ``DataError``."""
    from detectlab.data.coco import match_file_names
    from detectlab.utils import log

    if not results or not all(isinstance(r, dict) and isinstance(r.get("file_name"), str) for r in results):
        return results
    names = sorted({r["file_name"] for r in results})
    try:
        ids = dict(zip(names, match_file_names(names, list(coco_gt.imgs.values()), "the ground truth",
                                               allow_unmatched=True)))
    except DataError as exc:
        raise DataError(f"results by file_name: {exc}") from None
    unmatched = [n for n in names if ids[n] is None]
    if len(unmatched) == len(names):
        if all(r.get("image_id") in coco_gt.imgs for r in results):
            return results  # the ids are the ground truth's; the file names are some other path
        raise DataError(f"results by file_name: {unmatched[0]}: not among the images of the ground truth "
                        f"(no file_name matches; nor does any other result's)")
    if unmatched:  # predict.py on a folder that also holds other splits' images
        kept = [r for r in results if ids[r["file_name"]] is not None]
        log.info("%d results on %d images that are not in the ground truth left out (e.g. %s)",
                 len(results) - len(kept), len(unmatched), unmatched[0])
        results = kept
    changed = sum(r.get("image_id") != ids[r["file_name"]] for r in results)
    if not changed:
        return results
    log.info("%d of %d results had image_ids that are not their images' in the ground truth: matched by file_name "
             "(%d images)", changed, len(results), len(names) - len(unmatched))
    return [{**r, "image_id": ids[r["file_name"]]} for r in results]


def _check_fields(results) -> list[dict]:
    """``results`` as COCO results, field types checked before anything looks them up: each an
    object whose ids are integers, ``file_name`` a string, ``score`` a finite number, ``bbox``
    4 finite numbers ``[x, y, w, h]`` with ``w, h >= 0``."""
    for k, r in enumerate(results):
        if not isinstance(r, dict):
            raise DataError(f"result {k}: expected an object {{image_id, category_id, bbox, score}}, got {type(r).__name__}")
        for key in ("image_id", "category_id"):
            if key in r and not _is_integer(r[key]):
                raise DataError(f"result {k}: '{key}' must be an integer, got {str(r[key])[:40]!r}")
        if "file_name" in r and not isinstance(r["file_name"], str):
            raise DataError(f"result {k}: 'file_name' must be a string, got {type(r['file_name']).__name__}")
        for key in ("category_id", "score"):
            if key not in r:
                raise DataError(f"result {k}: missing '{key}'")
        if "bbox" not in r and "segmentation" not in r:
            raise DataError(f"result {k}: needs a 'bbox' or a 'segmentation'")
        if not _is_number(r["score"]):
            raise DataError(f"result {k}: 'score' must be a number, got {r['score']!r}")
        bbox = r.get("bbox")
        if bbox is not None and not (isinstance(bbox, list) and len(bbox) == 4 and all(_is_number(v) for v in bbox)
                                     and bbox[2] >= 0 and bbox[3] >= 0):
            raise DataError(f"result {k}: 'bbox' must be 4 numbers [x, y, w, h] with w, h >= 0, got {bbox!r}")
    return results


def checked_results(coco_gt, results: list[dict]) -> list[dict]:
    """A copy of COCO ``results`` checked against ``coco_gt`` (a pycocotools ``COCO``), ready
    to score and draw: ids matched by ``file_name`` (:func:`ids_by_file_name`), every field
    checked, and a result with a mask only given its mask's box (as pycocotools' ``loadRes``
    does for segm), so a one-line :class:`DataError` is the worst a results file can do."""
    return _check_results(coco_gt, ids_by_file_name(coco_gt, _check_fields(results)))


def _check_results(coco_gt, results: list[dict]) -> list[dict]:
    """Each result against the ground truth: known image and category, a box within one image
    side of its image and a mask of its image's size (:mod:`detectlab.data.bounds`, the rule
    for ground truth)."""
    from pycocotools import mask as mask_utils

    from detectlab.data.bounds import MARGIN, check_points, check_rle

    known_images = set(coco_gt.getImgIds())
    known_categories = set(coco_gt.getCatIds())
    boxed, sizes = [], []
    for k, r in enumerate(results):
        if "image_id" not in r:
            raise DataError(f"result {k}: missing 'image_id'")
        if r["image_id"] not in known_images:
            raise DataError(f"result {k}: image_id {r['image_id']} is not in the ground truth (results of "
                            "tools/predict.py: pass the ground truth to it with --data, so it writes its ids)")
        if r["category_id"] not in known_categories:
            raise DataError(f"result {k}: category_id {r['category_id']} is not in the ground truth")
        image = coco_gt.imgs[r["image_id"]]
        if r.get("segmentation") is not None:
            check_rle(r["segmentation"], int(image["height"]), int(image["width"]), f"result {k}: 'segmentation'",
                      compressed_only=True)
        if r.get("bbox") is not None:
            boxed.append(k)
            sizes.append((image["width"], image["height"]))
    if boxed:  # every box at once: corners finite and within the margin (see detectlab.data.bounds)
        with np.errstate(over="ignore", invalid="ignore"):
            b = np.array([results[k]["bbox"] for k in boxed], np.float64)
            corners = np.concatenate([b[:, :2], b[:, :2] + b[:, 2:]], axis=1)
            size = np.tile(np.array(sizes, np.float64), 2)
            bad = ~np.isfinite(corners).all(axis=1) | ((corners < -MARGIN * size) | (corners > (1 + MARGIN) * size)).any(axis=1)
        if bad.any():
            k = boxed[int(np.argmax(bad))]
            check_points(corners[int(np.argmax(bad))], *sizes[int(np.argmax(bad))], f"result {k}",
                         f"bbox {results[k]['bbox']}")
    out = copy.deepcopy(results)  # pycocotools' loadRes adds fields to what it is given
    for r in out:
        if r.get("bbox") is None:
            r["bbox"] = [float(v) for v in mask_utils.toBbox(r["segmentation"])]
    return out


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and np.isfinite(value)


def _is_integer(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


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
    data = read_json(path, DataError)
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
