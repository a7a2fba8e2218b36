#!/usr/bin/env python
"""Convert Darknet YOLO weights into a Keras by-name weights file (.h5).

    python tools/convert_darknet.py --config models/yolov3_darknet53_coco416.yaml \
        --num-classes 80 --weights yolov3.weights --out yolov3_coco.h5

Whole-network files and backbone-only files (``darknet53.conv.74``) are accepted; the
output loads with ``tools/train.py --weights out.h5`` (add ``--exclude 'yolo_output_.*'``
to fine-tune on another class set).
"""

from __future__ import annotations

import sys
from pathlib import Path

if not __package__:  # run as a script from a clone, without installing
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from detectlab.cli import ArgumentParser, add_config_flags, load_cli_config, positive_int, run  # noqa: E402


def main() -> int:
    p = ArgumentParser(description="Darknet .weights -> Keras .h5", prog="convert_darknet.py")
    add_config_flags(p)
    p.add_argument("--weights", required=True, help="Darknet .weights file")
    p.add_argument("--out", required=True, help="output .h5 file")
    p.add_argument("--num-classes", type=positive_int, help="classes of the network (default: model.num_classes, else 80)")
    args = p.parse_args()
    from detectlab.registry import MODELS
    from detectlab.weights.by_name import save_h5
    from detectlab.weights.darknet import load_darknet_weights

    cfg = load_cli_config(args.config, args.overrides)
    model = MODELS.get(cfg.model.family).build(cfg, args.num_classes or cfg.model.num_classes or 80, None)
    report = load_darknet_weights(model, args.weights)
    save_h5(model, args.out)
    print(f"{args.weights}: {report.summary()}")
    if report.missing:
        print(f"not in the file (left at their initial values): {', '.join(report.missing[:5])}{' ...' if len(report.missing) > 5 else ''}")
    if report.excluded:
        print(f"trained for another class count, not converted: {', '.join(report.excluded)}")
    print(f"written {args.out}")
    return 0


if __name__ == "__main__":
    run(main)
