#!/usr/bin/env python
"""Split a COCO instances JSON into train and val files (stratified by class where possible).

    python datasets/split.py --data all.json --val-ratio 0.2 --seed 0
    python datasets/split.py --data all.json --val-ratio 0.1 --out-train train.json --out-val val.json

Writes ``<data>_train.json`` and ``<data>_val.json`` beside the input unless told otherwise;
``file_name`` entries are rewritten relative to each output file. Each image goes to exactly
one side; images are grouped by the rarest class they contain, and each group is split by
the ratio, so rare classes appear on both sides when they have two or more images.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

if not __package__:  # run as a script from a clone, without installing
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from _args import ArgumentParser  # datasets/_args.py: no TensorFlow
else:  # installed as detectlab.datasets (the `detectlab` command)
    from ._args import ArgumentParser


def parse_args(argv=None) -> argparse.Namespace:
    p = ArgumentParser(description="COCO JSON -> train and val COCO JSON", prog="split.py")
    p.add_argument("--data", required=True, help="COCO instances JSON")
    p.add_argument("--images", help="image folder of --data (default: found next to the JSON)")
    p.add_argument("--val-ratio", type=float, required=True, help="fraction of images in val (0..1)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out-train", help="default: <data>_train.json")
    p.add_argument("--out-val", help="default: <data>_val.json")
    args = p.parse_args(argv)
    if not 0 < args.val_ratio < 1:
        p.error(f"argument --val-ratio: must be between 0 and 1, got {args.val_ratio}")
    return args


def main(argv=None) -> int:
    return split(parse_args(argv))


def split(args) -> int:
    from detectlab.data.coco import load_coco, read_coco_json, with_absolute_paths, write_coco
    from detectlab.data.split import split_coco

    from detectlab.outputs import distinct_outputs, output_file

    path = Path(args.data)
    outs = [(flag, Path(given or path.with_name(f"{path.stem}_{split}.json")))
            for flag, given, split in (("--out-train", args.out_train, "train"), ("--out-val", args.out_val, "val"))]
    distinct_outputs(outs)
    outs = [output_file(out, flag, [("--data", path), ("--images", args.images)]) for flag, out in outs]
    data = with_absolute_paths(read_coco_json(path), load_coco(path, args.images))
    for out, part in zip(outs, split_coco(data, args.val_ratio, args.seed)):
        write_coco(part, out)
        print(f"{out}: {len(part['images'])} images, {len(part['annotations'])} annotations")
    return 0


if __name__ == "__main__":
    arguments = parse_args()  # --help and flag errors end here, before TensorFlow is imported
    from detectlab.cli import run

    run(lambda: split(arguments))
