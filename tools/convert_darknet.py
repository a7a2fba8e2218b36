#!/usr/bin/env python
"""Convert Darknet or keras-yolo3 YOLO weights into a detectlab by-name weights file (.h5).

    python tools/convert_darknet.py --config models/yolov3_tiny_coco416.yaml \
        --weights yolov3-tiny.weights --out yolov3_tiny_coco.h5

Accepted: Darknet ``.weights`` (whole network, e.g. ``yolov3.weights`` /
``yolov3-tiny.weights``, or backbone only, ``darknet53.conv.74``; Darknet's batch norm is
reproduced exactly) with its ``.cfg`` (beside it with the same stem, or ``--cfg``), and
keras-yolo3 ``.h5`` files (``convert.py``'s whole-model ``yolo.h5``, ``train.py``'s
``trained_weights_*.h5``; loaded by layer order, every shape checked). The network's anchors,
masks, input size, class count and class names go into the ``.h5`` with the weights, so
``tools/predict.py --weights out.h5`` needs nothing else; ``tools/train.py --weights out.h5``
fine-tunes from it (add ``--exclude 'yolo_output_.*'`` for another class set).
"""

from __future__ import annotations

import sys
from pathlib import Path

if not __package__:  # run as a script from a clone, without installing
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from detectlab.cli import ArgumentParser, add_config_flags, load_cli_config, positive_int, run  # noqa: E402
from detectlab.weights.formats import CFG_HELP  # noqa: E402


def main() -> int:
    p = ArgumentParser(description="Darknet .weights or keras-yolo3 .h5 -> detectlab by-name .h5", prog="convert_darknet.py")
    add_config_flags(p)
    p.add_argument("--weights", required=True, help=(
        "Darknet .weights (yolov3.weights, yolov3-tiny.weights, or backbone-only darknet53.conv.74) or a keras-yolo3 "
        ".h5 (convert.py's yolo.h5 or train.py's trained_weights_*.h5, Keras 2 auto-named layers, loaded by layer order)"))
    p.add_argument("--cfg", help=CFG_HELP)
    p.add_argument("--out", required=True, help="output .h5 file")
    p.add_argument("--num-classes", type=positive_int, help=(
        "classes of the converted network (default: the file's, from its .cfg or its output layers; 80 for a "
        "backbone-only file); another count converts all but the output convolutions"))
    p.add_argument("--class-names", help="a names file (one per line, e.g. coco.names; a data.yaml) or names separated "
                   "by commas, saved in the .h5 (default: COCO's for 80 classes)")
    args = p.parse_args()
    from detectlab.data.class_names import read_class_names
    from detectlab.errors import ConfigError
    from detectlab.models.loading import model_and_config
    from detectlab.weights.by_name import save_h5
    from detectlab.weights.formats import file_settings

    cfg = load_cli_config(args.config, args.overrides)
    classes = args.num_classes
    if classes is None and not (cfg.model.num_classes or file_settings(args.weights, args.cfg).model.get("num_classes")):
        classes = 80  # a backbone file says nothing about the outputs
    model, cfg, report = model_and_config(cfg, args.weights, cfg_file=args.cfg, num_classes=classes)
    if args.class_names:
        names = read_class_names(args.class_names)
        if len(names) != model.num_classes:
            raise ConfigError(f"--class-names: {len(names)} names for a network of {model.num_classes} classes")
        model._init_classes(model.num_classes, names, None)
    save_h5(model, args.out)
    m = cfg.model
    print(f"{args.weights}: {report.summary()}")
    if report.missing:
        print(f"not in the file (left at their initial values): {', '.join(report.missing[:5])}{' ...' if len(report.missing) > 5 else ''}")
    if report.excluded:
        print(f"trained for another class count, not converted: {', '.join(report.excluded)}")
    print(f"network: {m.backbone} at {m.image_size} px, {model.num_classes} classes, anchors {m.anchors}, masks {m.anchor_masks}")
    print(f"written {args.out}")
    return 0


if __name__ == "__main__":
    run(main)
