#!/usr/bin/env python
"""Train a detector from a recipe.

    python tools/train.py --config models/yolov3_tiny_shapes.yaml --workdir runs/shapes

Writes DIR/config.yaml, TensorBoard logs (DIR/logs), checkpoints (DIR/checkpoints),
DIR/history.csv and, when the recipe has a validation split, DIR/metrics.json and
DIR/predictions.jpg. ``--resume`` continues a killed run from its last checkpoint.
"""

from __future__ import annotations

import sys
from pathlib import Path

if not __package__:  # run as a script from a clone, without installing
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from detectlab.cli import (  # noqa: E402
    ArgumentParser, add_config_flags, non_negative_int, other_dataset_overrides, positive_float, positive_int, run,
)
from detectlab.config import DataConfig, load_config, override  # noqa: E402
from detectlab.errors import ConfigError  # noqa: E402
from detectlab.outputs import output_folder  # noqa: E402
from detectlab.weights.formats import CFG_HELP, WEIGHTS_HELP  # noqa: E402


def parse_args(argv=None):
    p = ArgumentParser(description=__doc__.splitlines()[1], prog="train.py")
    add_config_flags(p)
    p.add_argument("--workdir", required=True, help="run folder (created if missing)")
    p.add_argument("--data", help="training data: COCO JSON, YOLO data.yaml/folder, LabelMe folder, CVAT XML, VOC folder, CSV, VIA JSON or shapes")
    p.add_argument("--val", help="validation data: a COCO JSON file, 'shapes' or 'none'")
    p.add_argument("--images", help="image folder of --data (default: next to the JSON)")
    p.add_argument("--val-images", help="image folder of --val")
    p.add_argument("--epochs", type=positive_int)
    p.add_argument("--steps-per-epoch", type=positive_int, help="batches per epoch (default: one pass)")
    p.add_argument("--batch-size", type=positive_int)
    p.add_argument("--image-size", type=positive_int)
    p.add_argument("--lr", type=positive_float, help="learning rate")
    p.add_argument("--workers", type=non_negative_int, help="data loader processes (0: in the training process)")
    p.add_argument("--weights", help=WEIGHTS_HELP)
    p.add_argument("--cfg", help=CFG_HELP)
    p.add_argument("--exclude", help="regex of layer names not to load from --weights (e.g. 'yolo_output_.*')")
    p.add_argument("--resume", action="store_true", help="continue the run in --workdir from its last checkpoint")
    p.add_argument("--layers", help="trainable layers: a preset (all, heads, ...) or a regex; one stage")
    p.add_argument("--precision", choices=["auto", "float32", "mixed_bfloat16", "mixed_float16"])
    p.add_argument("--quiet", action="store_true", help="one line per epoch instead of a progress bar")
    return p.parse_args(argv)


HOLDOUT = 0.1  # share of --data held out for validation when --val is not given


def overrides_from_flags(args, has_stages: bool, val_fraction: float = 0.0, base_data=None) -> list[str]:
    if has_stages and args.layers is None:
        for flag in ("epochs", "lr"):
            if getattr(args, flag) is not None:
                raise ConfigError(
                    f"--{flag}: the recipe trains in stages (train.stages); set them with --set "
                    f"train.stages=..., or train one stage with --layers"
                )
    mapping = {
        "data": "data.train", "images": "data.images", "val_images": "data.val_images",
        "epochs": "train.epochs", "steps_per_epoch": "train.steps_per_epoch", "batch_size": "train.batch_size",
        "image_size": "model.image_size", "lr": "train.lr", "workers": "train.workers",
        "precision": "train.precision", "layers": "train.layers",
    }
    out = [override(key, getattr(args, flag)) for flag, key in mapping.items() if getattr(args, flag) is not None]
    out += other_dataset_overrides(base_data if base_data is not None else DataConfig(), args.data, args.images,
                                   args.val, args.val_images)
    if args.data == "shapes" and args.val is None:
        out.append("data.val=shapes")
    if args.val is not None:
        out.append("data.val=null" if args.val.lower() == "none" else override("data.val", args.val))
    elif args.data is not None and args.data != "shapes":  # validate on the user's data, never the recipe's
        out += ["data.val=null", f"data.val_fraction={val_fraction or HOLDOUT}"]
    if args.layers is not None:
        out.append("train.stages=[]")
    if args.quiet:
        out.append("train.verbose=2")
    return out


def main(argv=None) -> int:
    args = parse_args(argv)
    workdir = output_folder(args.workdir, "--workdir")
    source = args.config or (workdir / "config.yaml" if args.resume else None)
    if source is None:
        raise ConfigError("--config is required (a recipe from models/), unless --resume continues a run")
    base = load_config(source)
    fraction = load_config(source, args.overrides).data.val_fraction
    cfg = load_config(source, args.overrides + overrides_from_flags(args, bool(base.train.stages), fraction, base.data))

    from detectlab.training.runner import train

    result = train(cfg, workdir, resume=args.resume, weights=args.weights, exclude=args.exclude, cfg_file=args.cfg)
    print()
    if not result.chief:
        print("worker done: the chief wrote the run folder (checkpoints, logs, history, metrics)")
        return 0
    print(f"run folder:   {workdir}")
    print(f"config:       {workdir / 'config.yaml'}")
    print(f"checkpoints:  {workdir / 'checkpoints'} (last.keras, best.keras)")
    print(f"history:      {workdir / 'history.csv'}")
    print(f"tensorboard:  tensorboard --logdir {workdir / 'logs'}")
    if result.metrics is not None:
        from detectlab.evaluation.coco_eval import format_metrics

        print(f"metrics:      {workdir / 'metrics.json'}")
        print(f"predictions:  {workdir / 'predictions.jpg'}")
        print(format_metrics(result.metrics))
        m = result.metrics
        of = f" of {m['weights']} (epoch {m['epoch']})" if m.get("epoch") else ""
        print(f"COCO AP50 (mAP@0.5){of} on the validation split: {m['bbox']['AP50']:.3f}")
    return 0


if __name__ == "__main__":
    run(main)
