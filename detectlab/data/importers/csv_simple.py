"""keras-frcnn "simple" CSV (also keras-retinanet's annotations CSV) -> COCO instances dict.

One box per line, ``path,x1,y1,x2,y2,class_name``, in pixels with ``x2``/``y2`` exclusive
(COCO's convention), so the COCO box is ``[x1, y1, x2 - x1, y2 - y1]``. A line
``path,,,,,`` lists an image without objects. An image's lines need not be adjacent; images
keep the order in which they first appear. Relative paths are relative to the CSV's folder
(or ``images_dir``). Blank lines and lines starting with ``#`` are skipped. Image sizes are
read from the image files.
"""

from __future__ import annotations

import csv
import io
import os
from pathlib import Path

from detectlab.data.importers import box_fields, coco_dict, image_size, number, register_loader
from detectlab.errors import DataError
from detectlab.utils import read_text

FIELDS = ("path", "x1", "y1", "x2", "y2", "class_name")


def read_csv(path: str | os.PathLike, classes=None, images_dir: str | os.PathLike | None = None) -> dict:
    """The images and boxes of a simple CSV file as a COCO dict."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: annotation file not found")
    image_root = Path(images_dir) if images_dir is not None else path.parent
    if not image_root.is_dir():
        raise DataError(f"{image_root}: image folder not found")
    image_index: dict[str, int] = {}
    images, annotations = [], []
    with io.StringIO(read_text(path, DataError), newline="") as f:
        for lineno, line in enumerate(f, 1):
            if not line.strip() or line.lstrip().startswith("#"):
                continue
            where = f"{path}:{lineno}"
            try:
                row = [field.strip() for field in next(csv.reader([line]))]
            except csv.Error as exc:
                raise DataError(f"{where}: not a CSV line ({exc})") from None
            if len(row) != len(FIELDS):
                raise DataError(f"{where}: expected {','.join(FIELDS)} ({len(FIELDS)} fields), got {len(row)}")
            if not row[0]:
                raise DataError(f"{where}: empty image path")
            file_name = os.path.abspath(image_root / row[0])
            if file_name not in image_index:
                width, height = image_size(file_name, where)
                image_index[file_name] = len(images)
                images.append({"file_name": file_name, "width": width, "height": height})
            if not any(row[1:]):  # path,,,,, : an image without objects
                continue
            x1, y1, x2, y2 = (number(text, name, where) for text, name in zip(row[1:5], FIELDS[1:5]))
            if x2 <= x1 or y2 <= y1:
                raise DataError(f"{where}: box has {'x2 <= x1' if x2 <= x1 else 'y2 <= y1'}")
            if not row[5]:
                raise DataError(f"{where}: empty class_name")
            width, height = images[image_index[file_name]]["width"], images[image_index[file_name]]["height"]
            annotations.append({
                **box_fields(x1, y1, x2, y2, width, height, where),
                "iscrowd": 0,
                "image_index": image_index[file_name],
                "category_name": row[5],
                "where": where,
            })
    return coco_dict(images, annotations, classes, path)


load_csv = register_loader("csv", read_csv)

