"""Evaluate a model on a dataset: predictions -> COCO results -> metrics (+ a picture)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from detectlab.config import Config
from detectlab.data.records import DetectionDataset
from detectlab.evaluation.coco_eval import evaluate_results
from detectlab.inference.predictor import Detections, Predictor, to_coco_results
from detectlab.inference.visualize import draw_detections, grid, save_image
from detectlab.utils import atomic_write_json


def evaluate_model(model, cfg: Config, dataset: DetectionDataset, out_dir=None, picture: int = 8) -> dict:
    """COCO metrics of ``model`` on ``dataset``.

    With ``out_dir``: writes ``metrics.json``, ``detections.json`` (COCO results) and,
    when ``picture`` > 0, ``predictions.jpg`` showing the first images' detections above
    ``predict.score_threshold``.
    """
    e = cfg.eval
    predictor = Predictor(model, cfg.model.image_size, e.score_threshold, e.nms_threshold, e.max_detections, e.batch_size)
    detections = predictor.predict_dataset(dataset)
    results = to_coco_results(dataset, detections)
    metrics = evaluate_results(dataset.coco(), results, max_detections=e.max_detections)
    if out_dir is not None:
        out_dir = Path(out_dir)
        atomic_write_json(out_dir / "detections.json", results)
        atomic_write_json(out_dir / "metrics.json", metrics)
        if picture:
            save_prediction_picture(dataset, detections, cfg.predict.score_threshold, out_dir / "predictions.jpg", picture)
    return metrics


def save_prediction_picture(dataset: DetectionDataset, detections: list[Detections], threshold: float, path, count: int = 8) -> None:
    tiles = []
    for i in range(min(count, len(dataset))):
        det = detections[i]
        keep = det.scores >= threshold
        shown = Detections(det.boxes[keep], det.scores[keep], det.class_ids[keep], None if det.masks is None else det.masks[keep])
        tiles.append(draw_detections(dataset.load_image(i), shown, dataset.class_names))
    save_image(path, grid(tiles, columns=min(4, len(tiles))))
