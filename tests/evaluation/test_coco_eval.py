import contextlib
import copy
import io

import numpy as np
import pytest
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from detectlab.data.records import quiet_coco
from detectlab.errors import DataError
from detectlab.evaluation.coco_eval import COCO_STAT_NAMES, evaluate_results
from detectlab.evaluation.voc import average_precision, voc_map


def ground_truth():
    images = [{"id": i, "file_name": f"{i}.jpg", "width": 100, "height": 100} for i in (1, 2, 3)]
    anns = [
        {"id": 1, "image_id": 1, "category_id": 4, "bbox": [10, 10, 30, 30], "area": 900, "iscrowd": 0},
        {"id": 2, "image_id": 1, "category_id": 9, "bbox": [50, 50, 40, 20], "area": 800, "iscrowd": 0},
        {"id": 3, "image_id": 2, "category_id": 4, "bbox": [5, 60, 20, 30], "area": 600, "iscrowd": 0},
        {"id": 4, "image_id": 3, "category_id": 9, "bbox": [20, 20, 60, 60], "area": 3600, "iscrowd": 0},
    ]
    return {"images": images, "annotations": anns, "categories": [{"id": 4, "name": "cat"}, {"id": 9, "name": "dog"}]}


RESULTS = [
    {"image_id": 1, "category_id": 4, "bbox": [12, 11, 29, 30], "score": 0.9},
    {"image_id": 1, "category_id": 9, "bbox": [48, 52, 40, 22], "score": 0.8},
    {"image_id": 1, "category_id": 4, "bbox": [60, 60, 10, 10], "score": 0.7},
    {"image_id": 2, "category_id": 4, "bbox": [5, 58, 22, 30], "score": 0.6},
    {"image_id": 3, "category_id": 9, "bbox": [30, 30, 60, 60], "score": 0.5},
    {"image_id": 3, "category_id": 4, "bbox": [20, 20, 60, 60], "score": 0.4},
]


def test_matches_pycocotools_own_numbers():
    metrics = evaluate_results(ground_truth(), RESULTS)
    gt = quiet_coco(ground_truth())
    with contextlib.redirect_stdout(io.StringIO()):
        ev = COCOeval(gt, gt.loadRes(copy.deepcopy(RESULTS)), "bbox")  # loadRes mutates its input
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    assert [metrics["bbox"][k] for k in COCO_STAT_NAMES] == pytest.approx(list(ev.stats))
    assert set(metrics["bbox"]["per_class"]) == {"cat", "dog"}
    assert metrics["bbox"]["per_class"]["cat"]["AP50"] == pytest.approx(np.mean(ev.eval["precision"][0, :, 0, 0, 2]))
    assert 0 < metrics["bbox"]["voc_map50"] <= 1
    assert "segm" not in metrics


def test_empty_and_invalid_results():
    empty = evaluate_results(ground_truth(), [])
    assert empty["bbox"]["AP"] == 0.0 and empty["num_detections"] == 0
    with pytest.raises(DataError, match="result 0: category_id 5 is not in the ground truth"):
        evaluate_results(ground_truth(), [{"image_id": 1, "category_id": 5, "bbox": [0, 0, 1, 1], "score": 1}])
    polygon = {"image_id": 1, "category_id": 4, "bbox": [0, 0, 1, 1], "score": 1, "segmentation": [[0, 0, 1, 0, 1, 1]]}
    with pytest.raises(DataError, match=r"result 0: 'segmentation' must be RLE"):
        evaluate_results(ground_truth(), [polygon])


def test_results_are_not_modified():
    results = copy.deepcopy(RESULTS)
    evaluate_results(ground_truth(), results)
    assert results == RESULTS


def test_voc_ap_hand_computed_with_difficult_ground_truth():
    gt = ground_truth()
    gt["annotations"] = [
        {"id": 1, "image_id": 1, "category_id": 4, "bbox": [0, 0, 10, 10], "area": 100, "iscrowd": 0},  # A
        {"id": 2, "image_id": 1, "category_id": 4, "bbox": [50, 50, 10, 10], "area": 100, "iscrowd": 0, "difficult": 1},  # D
        {"id": 3, "image_id": 2, "category_id": 4, "bbox": [0, 0, 10, 10], "area": 100, "iscrowd": 0},  # B
    ]
    dets = [
        {"image_id": 1, "category_id": 4, "bbox": [0, 0, 10, 10], "score": 0.9},  # TP (A)
        {"image_id": 1, "category_id": 4, "bbox": [50, 50, 10, 10], "score": 0.8},  # on difficult D: ignored
        {"image_id": 2, "category_id": 4, "bbox": [80, 80, 10, 10], "score": 0.7},  # FP
        {"image_id": 2, "category_id": 4, "bbox": [1, 0, 10, 10], "score": 0.6},  # TP (B)
        {"image_id": 1, "category_id": 4, "bbox": [0, 1, 10, 10], "score": 0.5},  # duplicate of A: FP
    ]
    # precision/recall over (TP, FP, TP, FP): recall .5 .5 1 1, precision 1 .5 .667 .5
    # envelope area: 0.5 * 1 + 0.5 * 2/3
    result = voc_map(quiet_coco(gt), dets)
    assert result["per_class"][4] == pytest.approx(0.5 + 0.5 * 2 / 3)
    assert result["map"] == pytest.approx(0.5 + 0.5 * 2 / 3)  # dog has no ground truth here


def test_average_precision_envelope():
    assert average_precision(np.array([0.5, 1.0]), np.array([1.0, 1.0])) == pytest.approx(1.0)
    assert average_precision(np.array([0.25, 0.5]), np.array([0.5, 1.0])) == pytest.approx(0.5)


def test_segm_metrics_when_results_carry_masks():
    from pycocotools import mask as mask_utils

    gt = ground_truth()
    for ann in gt["annotations"]:
        x, y, w, h = ann["bbox"]
        ann["segmentation"] = [[x, y, x + w, y, x + w, y + h, x, y + h]]
    results = []
    for r in RESULTS:
        m = np.zeros((100, 100), np.uint8)
        x, y, w, h = (int(v) for v in r["bbox"])
        m[y : y + h, x : x + w] = 1
        rle = mask_utils.encode(np.asfortranarray(m))
        rle["counts"] = rle["counts"].decode()
        results.append({**r, "segmentation": rle})
    metrics = evaluate_results(gt, results)
    assert set(metrics) >= {"bbox", "segm"} and metrics["segm"]["AP50"] > 0.5
