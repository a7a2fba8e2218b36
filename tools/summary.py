#!/usr/bin/env python
"""Print a model's layer summary (ends with Total / Trainable / Non-trainable params).

    python tools/summary.py --config models/yolov3_darknet53_coco416.yaml --num-classes 80
"""

from __future__ import annotations

import sys
from pathlib import Path

if not __package__:  # run as a script from a clone, without installing
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from detectlab.cli import ArgumentParser, add_config_flags, load_cli_config, positive_int, run  # noqa: E402


def main() -> int:
    p = ArgumentParser(description="model summary", prog="summary.py")
    add_config_flags(p)
    p.add_argument("--num-classes", type=positive_int, help="number of classes (default: model.num_classes, else 80)")
    p.add_argument("--layers", help="freeze all but these layers first (a preset or regex)")
    args = p.parse_args()
    from detectlab.registry import MODELS

    cfg = load_cli_config(args.config, args.overrides)
    family = MODELS.get(cfg.model.family)
    family.check(cfg.model)
    model = family.build(cfg, args.num_classes or cfg.model.num_classes or 80, None)
    if args.layers:
        model.set_trainable_layers(args.layers)
    model.summary(line_length=110)
    return 0


if __name__ == "__main__":
    run(main)
