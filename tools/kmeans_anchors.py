#!/usr/bin/env python
"""Compute YOLO anchors for a dataset with k-means (1 - IoU distance).

    python tools/kmeans_anchors.py --data instances_train.json --image-size 416 -k 9
"""

from __future__ import annotations

import sys
from pathlib import Path

if not __package__:  # run as a script from a clone, without installing
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from detectlab.cli import ArgumentParser, positive_int, run  # noqa: E402
from detectlab.errors import ConfigError  # noqa: E402


def main() -> int:
    p = ArgumentParser(description="k-means YOLO anchors", prog="kmeans_anchors.py")
    p.add_argument("--data", required=True, help="COCO JSON file")
    p.add_argument("--images", help="image folder (default: next to the JSON)")
    p.add_argument("--image-size", type=positive_int, default=416)
    p.add_argument("-k", type=positive_int, default=9, help="number of anchors (9 full, 6 tiny)")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args()
    from detectlab.data.anchor_kmeans import box_sizes, kmeans_anchors, mean_best_iou
    from detectlab.data.coco import load_coco

    sizes = box_sizes(load_coco(args.data, args.images), args.image_size)
    if len(sizes) < args.k:
        raise ConfigError(f"-k {args.k}: {args.data} has {len(sizes)} boxes (crowd regions left out); "
                          f"k-means needs at least as many boxes as anchors")
    anchors = kmeans_anchors(sizes, args.k, args.seed)
    print(f"{len(sizes)} boxes, mean best IoU {mean_best_iou(sizes, anchors):.3f}")
    print("anchors: [" + ", ".join(f"[{w:.0f}, {h:.0f}]" for w, h in anchors) + "]")
    return 0


if __name__ == "__main__":
    run(main)
