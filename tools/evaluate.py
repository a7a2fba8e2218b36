#!/usr/bin/env python
"""Evaluate with pycocotools (COCO bbox / segm, per-class AP) and VOC mAP@0.5.

    python tools/evaluate.py --config RECIPE --weights FILE --data instances_val.json --out metrics.json
    python tools/evaluate.py --gt instances_val.json --detections results.json --out metrics.json

``--weights RUN/checkpoints/best.keras`` alone finds the run's config.yaml. Beside the
metrics JSON (``--out m.json``) it writes ``m_per_class.csv``, ``m_pr_curves.png``
(precision/recall per class at IoU 0.5 and 0.75, ``m_pr_curves_segm.png`` with masks) and
``m_confusion_matrix.png`` (IoU 0.5, ``--confusion-score``); see detectlab/evaluation/plots.py.
"""

from __future__ import annotations

import sys
from pathlib import Path

if not __package__:  # run as a script from a clone, without installing
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from detectlab.cli import (  # noqa: E402
    ArgumentParser, add_config_flags, load_cli_config, positive_int, run, run_config_for, unit_float,
)
from detectlab.errors import ConfigError, DataError  # noqa: E402
from detectlab.utils import atomic_write_json  # noqa: E402
from detectlab.weights.formats import CFG_HELP  # noqa: E402


def main(argv=None) -> int:
    p = ArgumentParser(description="COCO / VOC evaluation", prog="evaluate.py")
    add_config_flags(p)
    p.add_argument("--weights", help="model weights: a .keras checkpoint or any file train.py --weights takes (see its --help)")
    p.add_argument("--cfg", help=CFG_HELP)
    p.add_argument("--data", help="data to evaluate on, in any format train.py reads (COCO JSON, VOC folder, YOLO "
                   "data.yaml, ...; images where the file says, or --images), or 'shapes' (the recipe's validation split)")
    p.add_argument("--images", help="image folder of --data")
    p.add_argument("--gt", help="ground-truth COCO JSON (score a results file, no model)")
    p.add_argument("--detections", help="COCO results JSON to score against --gt")
    p.add_argument("--out", required=True, help="metrics JSON to write")
    p.add_argument("--score", type=unit_float, help="score threshold (default: eval.score_threshold)")
    p.add_argument("--nms", type=unit_float, help="NMS IoU threshold (default: eval.nms_threshold)")
    p.add_argument("--max-detections", type=positive_int)
    p.add_argument("--batch-size", type=positive_int)
    p.add_argument("--confusion-score", type=unit_float,
                   help="score threshold of the confusion matrix (default: predict.score_threshold, 0.3)")
    args = p.parse_args(argv)
    from detectlab.data.records import quiet_coco
    from detectlab.evaluation.coco_eval import evaluate_results, format_metrics, load_results
    from detectlab.evaluation.plots import write_report

    evaluators: dict = {}
    if args.detections or args.gt:
        if not (args.detections and args.gt):
            raise ConfigError("--gt and --detections go together (score a results file)")
        from detectlab.data.coco import read_coco_json

        coco_gt, results = quiet_coco(read_coco_json(Path(args.gt))), load_results(args.detections)
        try:
            metrics = evaluate_results(coco_gt, results, evaluators=evaluators)
        except DataError as exc:
            raise DataError(f"{args.detections}: {exc}") from None
        atomic_write_json(args.out, metrics)
        confusion_score = 0.3 if args.confusion_score is None else args.confusion_score
    else:
        if not args.weights:
            raise ConfigError("--weights is required to evaluate a model (or pass --gt and --detections)")
        metrics, coco_gt, results, confusion_score = evaluate_checkpoint(args, evaluators)
    print(format_metrics(metrics))
    print(f"metrics written to {args.out}")
    written = write_report(args.out, metrics, evaluators, coco_gt, results, confusion_score)
    print(f"plots and tables: {', '.join(str(p) for p in written)}")
    return 0


def evaluate_checkpoint(args, evaluators: dict):
    """Metrics of ``--weights`` (the path of training's own evaluation), with the ground
    truth, the COCO results and the confusion-matrix score threshold."""
    import dataclasses

    from detectlab.data.loading import load_split
    from detectlab.evaluation.evaluate import Evaluator
    from detectlab.models.loading import model_and_config
    from detectlab.utils import atomic_write_json

    run_config = run_config_for(args.weights)
    cfg = load_cli_config(args.config, args.overrides, run_config)
    e = cfg.eval
    cfg = dataclasses.replace(cfg, eval=dataclasses.replace(
        e,
        score_threshold=args.score if args.score is not None else e.score_threshold,
        nms_threshold=args.nms if args.nms is not None else e.nms_threshold,
        max_detections=args.max_detections or e.max_detections,
        batch_size=args.batch_size or e.batch_size,
    ))
    if args.data in (None, "shapes"):
        workdir = run_config.parent if run_config else Path(".")
        dataset = load_split(cfg, "val", workdir)
        if dataset is None:
            raise ConfigError("--data is required: the recipe has no validation split")
    else:  # any format train.py reads; classes in the order the checkpoint was trained with
        from detectlab.models.loading import saved_class_names

        data = dataclasses.replace(cfg.data, val=args.data, val_images=args.images, val_split=None, val_fraction=0.0,
                                   classes=saved_class_names(args.weights) or None)
        dataset = load_split(dataclasses.replace(cfg, data=data), "val")
    model, cfg, _ = model_and_config(cfg, args.weights, dataset, cfg_file=args.cfg)
    warn_if_classes_differ(args.weights, dataset)
    out = Path(args.out)
    evaluation = Evaluator(model, cfg, dataset).run(evaluators)
    atomic_write_json(out, evaluation.metrics)
    score = cfg.predict.score_threshold if args.confusion_score is None else args.confusion_score
    return evaluation.metrics, dataset.coco(), evaluation.results, score


def warn_if_classes_differ(weights: str, dataset) -> None:
    """A checkpoint trained on other class names scores ~0 on ``dataset``: say so."""
    from detectlab.models.loading import saved_class_names
    from detectlab.utils import log

    saved = saved_class_names(weights)
    if saved is not None and list(saved) != list(dataset.class_names):
        log.warning("the classes differ: %s was trained on %s, %s has %s; AP compares them by position",
                    weights, ", ".join(saved), dataset.annotation_file, ", ".join(dataset.class_names))


if __name__ == "__main__":
    run(main)
