"""Evaluate a model on a dataset: predictions -> COCO results -> metrics (+ a picture).

One path for every caller: ``tools/evaluate.py``, the end of training and the in-training
callback (:mod:`detectlab.training.coco_callback`) all go through :class:`Evaluator`, in
float32, so they print the same digits on the same weights.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from pathlib import Path

import keras

from detectlab.config import Config
from detectlab.data.records import DetectionDataset
from detectlab.evaluation.coco_eval import evaluate_results
from detectlab.inference.predictor import Detections, Predictor, to_coco_results
from detectlab.inference.visualize import draw_detections, grid, save_image
from detectlab.utils import atomic_write_json, log


@dataclass
class Evaluation:
    """What one evaluation produced: ``metrics`` (see :func:`evaluate_results`), the
    per-image ``detections`` (original pixels) and the COCO ``results`` list."""

    metrics: dict
    detections: list[Detections]
    results: list[dict]


class Evaluator:
    """COCO metrics of ``model`` (built in float32, see :func:`float32_policy`) on ``dataset``
    (``dataset.head(n)`` for a cap) with the recipe's ``eval`` thresholds; bbox, and segm
    when the model predicts masks. ``run(evaluators)`` fills a dict with each iou type's
    ``COCOeval`` (for the plots of :mod:`detectlab.evaluation.plots`)."""

    def __init__(self, model, cfg: Config, dataset: DetectionDataset):
        e = cfg.eval
        self.dataset = dataset
        self.max_detections = e.max_detections
        with float32_policy():  # the decoding / NMS layers added for inference
            self.predictor = Predictor(model, cfg.model.image_size, e.score_threshold, e.nms_threshold, e.max_detections, e.batch_size)
        self.iou_types = ["bbox", "segm"] if "masks" in self.predictor.network.output else ["bbox"]

    def run(self, evaluators: dict | None = None) -> Evaluation:
        detections = self.predictor.predict_dataset(self.dataset)
        results = to_coco_results(self.dataset, detections)
        metrics = evaluate_results(self.dataset.coco(), results, self.iou_types, self.max_detections, evaluators)
        return Evaluation(metrics, detections, results)


def evaluate_model(model, cfg: Config, dataset: DetectionDataset, out_dir=None, picture: int = 8, extra: dict | None = None) -> dict:
    """COCO metrics of ``model`` on ``dataset`` (``extra`` entries first, e.g. the weights).

    With ``out_dir``: writes ``metrics.json``, ``detections.json`` (COCO results) and,
    when ``picture`` > 0, ``predictions.jpg`` showing the first images' detections above
    ``predict.score_threshold``.
    """
    evaluation = Evaluator(model, cfg, dataset).run()
    metrics = {**(extra or {}), **evaluation.metrics}
    if out_dir is not None:
        out_dir = Path(out_dir)
        atomic_write_json(out_dir / "detections.json", evaluation.results)
        atomic_write_json(out_dir / "metrics.json", metrics)
        if picture:
            save_prediction_picture(dataset, evaluation.detections, cfg.predict.score_threshold, out_dir / "predictions.jpg", picture)
    return metrics


def evaluate_run(model, cfg: Config, dataset: DetectionDataset, workdir) -> dict:
    """The end-of-training evaluation: ``checkpoints/best.keras`` loaded into a float32
    model (what ``tools/evaluate.py --weights`` does), else ``model`` as it is. Writes
    ``metrics.json`` (with ``weights`` and ``epoch``), ``detections.json``, ``predictions.jpg``."""
    from detectlab.models.loading import model_from_config
    from detectlab.checkpoints import read_state

    workdir = Path(workdir)
    best = workdir / "checkpoints" / "best.keras"
    state = read_state(best.parent) or {}
    if best.is_file():
        with float32_policy():
            model = model_from_config(cfg, str(best), dataset)
        source = {"weights": str(best.relative_to(workdir)), "epoch": state.get("best_epoch")}
        log.info("evaluating %s (epoch %s, %s %s) on %s (%d images)", best, source["epoch"], state.get("monitor"),
                 _short(state.get("best")), dataset.annotation_file, len(dataset))
    else:
        source = {"weights": "the model as trained (no best.keras)", "epoch": None}
        log.info("evaluating %s on %s (%d images)", source["weights"], dataset.annotation_file, len(dataset))
    return evaluate_model(model, cfg, dataset, workdir, extra=source)


def _short(value) -> str:
    return f"{value:.4g}" if isinstance(value, (int, float)) else str(value)


@contextlib.contextmanager
def float32_policy():
    """Build models in float32 inside the block, whatever the training precision."""
    previous = keras.mixed_precision.global_policy()
    keras.mixed_precision.set_dtype_policy("float32")
    try:
        yield
    finally:
        keras.mixed_precision.set_dtype_policy(previous)


def save_prediction_picture(dataset: DetectionDataset, detections: list[Detections], threshold: float, path, count: int = 8) -> None:
    tiles = []
    for i in range(min(count, len(dataset))):
        tiles.append(draw_detections(dataset.load_image(i), detections[i].above(threshold), dataset.class_names))
    save_image(path, grid(tiles, columns=min(4, len(tiles))))


def ap50_drop(predictor, detect, dataset: DetectionDataset, name: str = "int8") -> str:
    """COCO AP50 of ``detect`` (image -> :class:`Detections`, e.g. an int8 TFLite model) on
    ``dataset`` next to ``predictor``'s (the Keras model's), in words."""
    ap = {}
    for who, detections in (("keras", predictor.predict_dataset(dataset)),
                            (name, [detect(dataset.load_image(i)) for i in range(len(dataset))])):
        metrics = evaluate_results(dataset.coco(), to_coco_results(dataset, detections), ["bbox"], predictor.max_detections)
        ap[who] = metrics["bbox"]["AP50"]
    return f"AP50 on {len(dataset)} images: keras {ap['keras']:.3f}, {name} {ap[name]:.3f} (drop {ap['keras'] - ap[name]:+.3f})"

