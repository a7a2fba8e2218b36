#!/usr/bin/env python
"""Convert annotations between COCO JSON and the formats users arrive with.

    python datasets/convert.py --from yolo --input data.yaml --split val --out val.json
    python datasets/convert.py --from yolo --input dataset/ --out all.json --val-ratio 0.2 --seed 0
    python datasets/convert.py --from labelme --input labelme_folder/ --out train.json
    python datasets/convert.py --from cvat --input annotations.xml --images images/ --out train.json
    python datasets/convert.py --from voc --input VOCdevkit/VOC2007 --split trainval --out voc07.json
    python datasets/convert.py --from voc --annotations annotations/ --images images/ --out all.json --val-ratio 0.2
    python datasets/convert.py --from csv --input annotations.csv --out train.json --classes cat,dog
    python datasets/convert.py --from via --input balloon/train/via_region_data.json --out train.json --default-class balloon
    python datasets/convert.py --from coco --to yolo --input train.json --out yolo_dataset/ --split train
    python datasets/convert.py --from coco --to voc --input train.json --out voc_dataset/

COCO output: images stay where they are (``file_name`` is relative to the output file's
folder, so ``tools/train.py --data OUT.json`` finds them). With ``--val-ratio`` the output is
split (stratified by class) into ``OUT_train.json`` and ``OUT_val.json`` (or the ``train`` and
``val`` splits of a YOLO / VOC output folder). ``--help`` and flag errors do not load TensorFlow.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from _args import ArgumentParser  # noqa: E402  (datasets/_args.py: no TensorFlow)

TARGETS = ("coco", "yolo", "voc")
# reader keyword -> the flag that sets it (a reader takes the keywords its format uses)
READER_OPTIONS = {"split": "--split", "classes": "--classes", "images_dir": "--images",
                  "annotations_dir": "--annotations", "class_attribute": "--class-attribute",
                  "default_class": "--default-class"}


def parse_args(argv=None) -> argparse.Namespace:
    p = ArgumentParser(description="annotations in one format -> another (COCO JSON in the middle)", prog="convert.py")
    p.add_argument("--from", dest="source_format", required=True,
                   help="input format, a name in detectlab's DATASET_FORMATS registry (built in: coco, yolo, labelme, "
                        "cvat, voc, csv, via)")
    p.add_argument("--to", dest="target_format", default="coco", choices=TARGETS, help="output format (default coco)")
    p.add_argument("--input", help="COCO/VIA JSON, YOLO data.yaml or folder, LabelMe folder, CVAT XML, VOC folder, CSV")
    p.add_argument("--out", required=True, help="output COCO JSON file (--to coco) or folder (--to yolo|voc)")
    p.add_argument("--split", help="split to read (VOC ImageSets name, YOLO data.yaml key or images/ subfolder); "
                                   "for --to yolo|voc the name of the split written (default train)")
    p.add_argument("--classes", help="comma-separated class names, in category id order (default: sorted names)")
    p.add_argument("--images", help="image folder (default: found from the input)")
    p.add_argument("--annotations", help="VOC: folder of .xml files (any layout)")
    p.add_argument("--val-ratio", type=float, help="split into train and val with this fraction of images in val")
    p.add_argument("--seed", type=int, default=0, help="seed of the --val-ratio split (default 0)")
    p.add_argument("--copy-images", action="store_true", help="--to yolo: copy images instead of symlinking")
    p.add_argument("--class-attribute", help="VIA region attribute holding the class name")
    p.add_argument("--default-class", help="VIA class of regions without attributes (default: 'object', with a warning)")
    args = p.parse_args(argv)
    if args.input is None and not (args.source_format == "voc" and args.annotations):
        p.error("argument --input is required (or --annotations for --from voc)")
    if args.source_format == "coco" and args.target_format == "coco":
        p.error("--from coco needs --to yolo or --to voc (to split a COCO file, use datasets/split.py)")
    if args.val_ratio is not None and not 0 < args.val_ratio < 1:
        p.error(f"argument --val-ratio: must be between 0 and 1, got {args.val_ratio}")
    return args


def read_source(args) -> dict:
    """The input as a COCO dict with absolute image paths, read by the format's registered
    reader (``DATASET_FORMATS.get(name).read``) with the flags it takes."""
    import inspect

    from detectlab.errors import ConfigError
    from detectlab.registry import DATASET_FORMATS

    read = DATASET_FORMATS.get(args.source_format).read
    accepted = inspect.signature(read).parameters
    values = {"split": args.split, "classes": args.classes, "images_dir": args.images, "annotations_dir": args.annotations,
              "class_attribute": args.class_attribute, "default_class": args.default_class}
    given = {k: v for k, v in values.items() if v is not None}
    if args.source_format == "coco":  # from COCO, --split names the split written
        given.pop("split", None)
    for key in given:
        if key not in accepted:
            raise ConfigError(f"argument {READER_OPTIONS[key]}: not for --from {args.source_format}")
    return read(args.input, **given)


def convert(args) -> int:
    from detectlab.data.coco import load_coco, write_coco
    from detectlab.data.split import split_coco

    data = read_source(args)
    source = args.input or args.annotations
    load_coco(data, source=source)  # validate every box now rather than at training time
    if args.val_ratio is not None:
        parts = dict(zip(("train", "val"), split_coco(data, args.val_ratio, args.seed)))
    else:
        parts = {args.split or "train": data}
    for split, part in parts.items():
        if args.target_format == "coco":
            out = Path(args.out)
            if args.val_ratio is not None:
                out = out.with_name(f"{out.stem}_{split}{out.suffix or '.json'}")
            write_coco(part, out)
            print(summary(out, part))
            continue
        dataset = load_coco(part, source=source)
        if args.target_format == "yolo":
            from detectlab.data.importers.yolo import write_yolo

            out = write_yolo(dataset, args.out, split, args.copy_images)
        else:
            from detectlab.data.importers.voc import write_voc

            out = write_voc(dataset, args.out, split if (args.split or args.val_ratio is not None) else None)
        print(summary(f"{out} ({split})", part))
    return 0


def summary(out, data: dict) -> str:
    names = ", ".join(c["name"] for c in data["categories"])
    return (f"{out}: {len(data['images'])} images, {len(data['annotations'])} annotations, "
            f"{len(data['categories'])} categories ({names})")


if __name__ == "__main__":
    arguments = parse_args()  # --help and flag errors end here, before TensorFlow is imported
    from detectlab.cli import run

    run(lambda: convert(arguments))
