#!/usr/bin/env python
"""Write the built-in synthetic shapes dataset (COCO format) to a folder.

    python datasets/shapes.py --out data/shapes --train 800 --val 100 --size 128 --seed 0
"""

from __future__ import annotations

import sys
from pathlib import Path

if not __package__:  # run as a script from a clone, without installing
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from detectlab.cli import ArgumentParser, non_negative_int, positive_int, run  # noqa: E402
from detectlab.config import MAX_SHAPES_SIZE  # noqa: E402
from detectlab.outputs import output_folder  # noqa: E402


def main(argv=None) -> int:
    p = ArgumentParser(description="synthetic shapes dataset", prog="shapes.py")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--train", type=non_negative_int, default=800, help="training images")
    p.add_argument("--val", type=non_negative_int, default=100, help="validation images")
    p.add_argument("--size", type=positive_int, default=128, help=f"image side in pixels (32 to {MAX_SHAPES_SIZE})")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    if args.size < 32:
        p.error(f"argument --size: must be at least 32, got {args.size}")
    if args.size > MAX_SHAPES_SIZE:
        p.error(f"argument --size: must be at most {MAX_SHAPES_SIZE}, got {args.size}")
    output_folder(args.out, "--out")
    from detectlab.data.shapes import write_shapes_dataset

    paths = write_shapes_dataset(args.out, args.train, args.val, args.size, args.seed)
    for split, path in paths.items():
        print(f"{split}: {path}")
    return 0


if __name__ == "__main__":
    run(main)
