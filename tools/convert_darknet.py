#!/usr/bin/env python
"""Convert Darknet or keras-yolo3 YOLO weights into a detectlab by-name weights file (.h5).

    python tools/convert_darknet.py --config models/yolov3_darknet53_coco416.yaml \
        --num-classes 80 --weights yolov3.weights --out yolov3_coco.h5

Accepted: Darknet ``.weights`` (whole network, e.g. ``yolov3.weights`` /
``yolov3-tiny.weights``, or backbone only, ``darknet53.conv.74``; Darknet's batch norm is
reproduced exactly) and keras-yolo3 ``.h5`` files (``convert.py``'s whole-model ``yolo.h5``,
``train.py``'s ``trained_weights_*.h5``; loaded by layer order, every shape checked). The
output loads with ``tools/train.py --weights out.h5`` (add ``--exclude 'yolo_output_.*'``
to fine-tune on another class set).
"""

from __future__ import annotations

import sys
from pathlib import Path

if not __package__:  # run as a script from a clone, without installing
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from detectlab.cli import ArgumentParser, add_config_flags, load_cli_config, positive_int, run  # noqa: E402
from detectlab.outputs import output_file  # noqa: E402


def main() -> int:
    p = ArgumentParser(description="Darknet .weights or keras-yolo3 .h5 -> detectlab by-name .h5", prog="convert_darknet.py")
    add_config_flags(p)
    p.add_argument("--weights", required=True, help=(
        "Darknet .weights (yolov3.weights, yolov3-tiny.weights, or backbone-only darknet53.conv.74) or a keras-yolo3 "
        ".h5 (convert.py's yolo.h5 or train.py's trained_weights_*.h5, Keras 2 auto-named layers, loaded by layer order); "
        "files trained for another class count convert all but the output convolutions"))
    p.add_argument("--out", required=True, help="output .h5 file")
    p.add_argument("--num-classes", type=positive_int, help="classes of the network (default: model.num_classes, else 80)")
    args = p.parse_args()
    output_file(args.out, "--out", [("--weights", args.weights), ("--config", args.config)])
    from detectlab.registry import MODELS
    from detectlab.weights.by_name import save_h5
    from detectlab.weights.formats import load_weights

    cfg = load_cli_config(args.config, args.overrides)
    model = MODELS.get(cfg.model.family).build(cfg, args.num_classes or cfg.model.num_classes or 80, None)
    report = load_weights(model, args.weights)
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
