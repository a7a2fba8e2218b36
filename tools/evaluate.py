#!/usr/bin/env python
"""Evaluate with pycocotools (COCO bbox / segm, per-class AP) and VOC mAP@0.5.

    python tools/evaluate.py --config RECIPE --weights FILE --data instances_val.json --out metrics.json
    python tools/evaluate.py --gt instances_val.json --detections results.json --out metrics.json

``--weights RUN/checkpoints/best.keras`` alone finds the run's config.yaml.
"""

from __future__ import annotations

import sys
from pathlib import Path

if not __package__:  # run as a script from a clone, without installing
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from detectlab.cli import (  # noqa: E402
    ArgumentParser, add_config_flags, load_cli_config, positive_int, run, run_config_for, unit_float,
)
from detectlab.errors import ConfigError  # noqa: E402
from detectlab.utils import atomic_write_json  # noqa: E402


def main() -> int:
    p = ArgumentParser(description="COCO / VOC evaluation", prog="evaluate.py")
    add_config_flags(p)
    p.add_argument("--weights", help="model weights (.keras checkpoint, .h5, Darknet .weights)")
    p.add_argument("--data", help="COCO JSON to evaluate on, or 'shapes' (the recipe's validation split)")
    p.add_argument("--images", help="image folder of --data")
    p.add_argument("--gt", help="ground-truth COCO JSON (score a results file, no model)")
    p.add_argument("--detections", help="COCO results JSON to score against --gt")
    p.add_argument("--out", required=True, help="metrics JSON to write")
    p.add_argument("--score", type=unit_float, help="score threshold (default: eval.score_threshold)")
    p.add_argument("--nms", type=unit_float, help="NMS IoU threshold (default: eval.nms_threshold)")
    p.add_argument("--max-detections", type=positive_int)
    p.add_argument("--batch-size", type=positive_int)
    args = p.parse_args()
    from detectlab.evaluation.coco_eval import evaluate_results, format_metrics, load_results

    if args.detections or args.gt:
        if not (args.detections and args.gt):
            raise ConfigError("--gt and --detections go together (score a results file)")
        metrics = evaluate_results(args.gt, load_results(args.detections))
        atomic_write_json(args.out, metrics)
    else:
        if not args.weights:
            raise ConfigError("--weights is required to evaluate a model (or pass --gt and --detections)")
        metrics = evaluate_checkpoint(args)
    print(format_metrics(metrics))
    print(f"metrics written to {args.out}")
    return 0


def evaluate_checkpoint(args) -> dict:
    import dataclasses

    from detectlab.data.coco import load_coco
    from detectlab.data.loading import load_split
    from detectlab.evaluation.evaluate import evaluate_model
    from detectlab.models.loading import model_from_config
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
    else:
        dataset = load_coco(args.data, args.images, True, cfg.data.invalid_boxes)
    model = model_from_config(cfg, args.weights, dataset)
    out = Path(args.out)
    metrics = evaluate_model(model, cfg, dataset, out_dir=None)
    atomic_write_json(out, metrics)
    return metrics


if __name__ == "__main__":
    run(main)
