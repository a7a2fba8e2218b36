"""Per-class table, precision/recall curves (from COCOeval's own array) and the confusion matrix."""

import cv2
import numpy as np
import pytest

from detectlab.data.records import quiet_coco
from detectlab.evaluation.coco_eval import evaluate_results
from detectlab.evaluation.plots import confusion_matrix, pr_curve, write_report
from tests.evaluation.test_coco_eval import RESULTS, ground_truth


def test_pr_curve_area_is_cocoeval_ap_of_the_class():
    evaluators: dict = {}
    metrics = evaluate_results(ground_truth(), RESULTS, evaluators=evaluators)
    evaluator = evaluators["bbox"]
    for k, name in enumerate(["cat", "dog"]):
        for iou, key in ((0.5, "AP50"), (0.75, "AP75")):
            recall, precision = pr_curve(evaluator, k, iou)
            assert recall.shape == precision.shape == (101,)
            # COCO's AP is the mean precision over its 101 recall points: the curve's area
            assert np.mean(precision) == pytest.approx(metrics["bbox"]["per_class"][name][key])
            assert np.trapezoid(precision, recall) == pytest.approx(np.mean(precision), abs=0.02)
    # cat at IoU 0.5, results by score: hit, miss, hit, miss -> precision 1 up to recall 0.5,
    # then the envelope 2/3 up to recall 1 (101 points: 51 at 1, 50 at 2/3)
    recall, precision = pr_curve(evaluator, 0, 0.5)
    assert precision[:51] == pytest.approx(np.ones(51)) and precision[51:] == pytest.approx(np.full(50, 2 / 3))
    assert metrics["bbox"]["per_class"]["cat"]["AP50"] == pytest.approx((51 + 50 * 2 / 3) / 101)
    assert metrics["bbox"]["per_class"]["cat"]["instances"] == 2


def test_confusion_matrix_counts_a_hand_made_case():
    images = [{"id": i, "file_name": f"{i}.jpg", "width": 100, "height": 100} for i in (1, 2)]
    anns = [
        {"id": 1, "image_id": 1, "category_id": 4, "bbox": [0, 0, 20, 20], "area": 400, "iscrowd": 0},  # cat, found
        {"id": 2, "image_id": 1, "category_id": 9, "bbox": [50, 50, 20, 20], "area": 400, "iscrowd": 0},  # dog, called cat
        {"id": 3, "image_id": 2, "category_id": 4, "bbox": [10, 10, 30, 30], "area": 900, "iscrowd": 0},  # cat, missed
    ]
    gt = quiet_coco({"images": images, "annotations": anns, "categories": [{"id": 4, "name": "cat"}, {"id": 9, "name": "dog"}]})
    results = [
        {"image_id": 1, "category_id": 4, "bbox": [1, 1, 20, 20], "score": 0.9},  # right
        {"image_id": 1, "category_id": 4, "bbox": [50, 51, 20, 20], "score": 0.8},  # wrong class
        {"image_id": 2, "category_id": 9, "bbox": [70, 70, 20, 20], "score": 0.7},  # on background
        {"image_id": 2, "category_id": 4, "bbox": [10, 10, 30, 30], "score": 0.2},  # below the score threshold
    ]
    matrix = confusion_matrix(gt, results, iou_threshold=0.5, score_threshold=0.3)
    #                     predicted: cat dog background
    expected = np.array([[1, 0, 1],  # true cat: one right, one missed
                         [1, 0, 0],  # true dog: called cat
                         [0, 1, 0]])  # background: one dog detection
    np.testing.assert_array_equal(matrix, expected)
    # at a lower threshold the last result finds the missed cat
    assert confusion_matrix(gt, results, 0.5, 0.1)[0].tolist() == [2, 0, 0]


def test_report_files_beside_the_metrics(tmp_path):
    gt = quiet_coco(ground_truth())
    evaluators: dict = {}
    metrics = evaluate_results(gt, RESULTS, evaluators=evaluators)
    written = write_report(tmp_path / "m.json", metrics, evaluators, gt, RESULTS, 0.3)
    assert [p.name for p in written] == ["m_per_class.csv", "m_pr_curves.png", "m_confusion_matrix.png"]
    rows = (tmp_path / "m_per_class.csv").read_text().splitlines()
    assert rows[0] == "class,AP,AP50,AP75,instances" and rows[1].startswith("cat,") and rows[1].endswith(",2")
    for png in written[1:]:
        image = cv2.imread(str(png))
        assert image is not None and image.shape[0] > 300 and image.std() > 10  # a drawn picture, not blank
