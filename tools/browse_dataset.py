#!/usr/bin/env python
"""Look at training data as the model sees it, and summarise a dataset.

    python tools/browse_dataset.py --config models/yolov3_tiny_coco416.yaml --data train.json --out browse/
    python tools/browse_dataset.py --config RECIPE --data data.yaml --out browse/ --augment --num 32
    python tools/browse_dataset.py --config RECIPE --data train.json --out browse/ --stats

Grids (``grid_000.png``, ...) show the samples the batch generator hands the model's target
encoder: letterboxed to ``model.image_size`` (with ``--augment``: the recipe's augmentation,
seeded per sample exactly as in epoch 0 of training), with boxes, class names and masks (crowd
regions in grey). ``--stats`` writes ``stats.txt`` (images, instances per class, images
without labels, crowd counts, box sizes) and ``stats.png`` (box-size and aspect-ratio
histograms in model-input pixels against the recipe's anchors, instances per class).
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from detectlab.cli import (  # noqa: E402
    ArgumentParser, add_config_flags, load_cli_config, other_dataset_overrides, positive_int, run,
)
from detectlab.config import override  # noqa: E402
from detectlab.outputs import output_folder  # noqa: E402


def main() -> int:
    p = ArgumentParser(description="image grids of training samples and dataset statistics", prog="browse_dataset.py")
    add_config_flags(p)
    p.add_argument("--data", help="dataset (default: the recipe's data.train); any format tools/train.py reads")
    p.add_argument("--images", help="image folder of --data")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--augment", action="store_true", help="apply the recipe's training augmentation")
    p.add_argument("--num", type=positive_int, default=16, help="samples to draw (default 16)")
    p.add_argument("--columns", type=positive_int, default=4)
    p.add_argument("--stats", action="store_true", help="also write stats.txt and stats.png")
    args = p.parse_args()

    from detectlab.data.loading import load_split
    from detectlab.training.browse import dataset_stats, render_grids

    out = output_folder(args.out, "--out")
    overrides = list(args.overrides) + [override("data.train", args.data)] * bool(args.data)
    overrides += [override("data.images", args.images)] * bool(args.images)
    if args.data:
        overrides += other_dataset_overrides(load_cli_config(args.config, []).data, args.data, args.images)
    cfg = load_cli_config(args.config, overrides)
    dataset = load_split(cfg, "train", out)  # read and checked once for both
    for path in render_grids(cfg, out, args.num, args.columns, args.augment, dataset):
        print(path)
    if args.stats:
        for path in dataset_stats(cfg, out, dataset):
            print(path)
    return 0


if __name__ == "__main__":
    run(main)
