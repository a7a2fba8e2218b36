#!/usr/bin/env python
"""Convert Pascal VOC, simple CSV or VIA annotations to a COCO instances JSON.

    python datasets/convert.py --from voc --to coco --input VOCdevkit/VOC2007 --split trainval --out voc07.json
    python datasets/convert.py --from csv --to coco --input annotations.csv --out train.json --classes cat,dog
    python datasets/convert.py --from via --to coco --input balloon/train/via_region_data.json --out train.json --default-class balloon

Images stay where they are: ``file_name`` is written relative to the output file's folder,
so ``tools/train.py --data OUT.json`` finds them without ``--images``.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from detectlab.cli import ArgumentParser, run  # noqa: E402

FORMATS = ("voc", "csv", "via")


def main() -> int:
    p = ArgumentParser(description="annotations in another format -> COCO JSON", prog="convert.py")
    p.add_argument("--from", dest="source_format", required=True, choices=FORMATS, help="input format")
    p.add_argument("--to", dest="target_format", default="coco", choices=("coco",), help="output format")
    p.add_argument("--input", required=True, help="VOC year folder, CSV file or VIA JSON file")
    p.add_argument("--out", required=True, help="output COCO JSON file")
    p.add_argument("--split", help="VOC split: train, val, trainval or test (default: every Annotations/*.xml)")
    p.add_argument("--classes", help="comma-separated class names, in category id order (default: sorted names)")
    p.add_argument("--images", help="image folder (default: VOC JPEGImages/, or the input file's folder)")
    p.add_argument("--class-attribute", help="VIA region attribute holding the class name")
    p.add_argument("--default-class", default="object", help="VIA class of regions without attributes")
    args = p.parse_args()
    if args.split is not None and args.source_format != "voc":
        p.error("argument --split: only for --from voc")
    if args.source_format != "via" and (args.class_attribute is not None or args.default_class != "object"):
        p.error("arguments --class-attribute/--default-class: only for --from via")

    from detectlab.data.coco import load_coco
    from detectlab.data.importers.csv_simple import read_csv
    from detectlab.data.importers.via import read_via
    from detectlab.data.importers.voc import read_voc
    from detectlab.utils import atomic_write_json

    if args.source_format == "voc":
        data = read_voc(args.input, args.split, args.classes, args.images)
    elif args.source_format == "csv":
        data = read_csv(args.input, args.classes, args.images)
    else:
        data = read_via(args.input, args.classes, args.images, args.class_attribute, args.default_class)
    load_coco(data, source=args.input)  # validate every box now rather than at training time
    out_dir = os.path.dirname(os.path.abspath(args.out))
    for image in data["images"]:
        image["file_name"] = _relative(image["file_name"], out_dir)
    atomic_write_json(args.out, data)
    names = ", ".join(c["name"] for c in data["categories"])
    print(
        f"{args.out}: {len(data['images'])} images, {len(data['annotations'])} annotations, "
        f"{len(data['categories'])} categories ({names})"
    )
    return 0


def _relative(path: str, folder: str) -> str:
    try:
        return os.path.relpath(path, folder)
    except ValueError:  # another drive (Windows): keep the absolute path
        return path


if __name__ == "__main__":
    run(main)
