"""datasets/convert.py as a user runs it (subprocesses): VOC -> COCO JSON that load_coco reads."""

import json
import subprocess
import sys

import numpy as np

from detectlab.data.coco import load_coco
from tests.conftest import ENV, ROOT
from tests.data.test_importers import write_csv, write_voc


def convert(*args):
    command = [sys.executable, str(ROOT / "datasets" / "convert.py"), "--to", "coco", *map(str, args)]
    return subprocess.run(command, capture_output=True, text=True, env=ENV, timeout=300)


def test_voc_to_coco_json_with_relative_image_paths(tmp_path):
    root = write_voc(tmp_path)
    out = tmp_path / "out" / "voc_trainval.json"
    result = convert("--from", "voc", "--input", root, "--split", "trainval", "--classes", "dog,cat", "--out", out)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == f"{out}: 2 images, 3 annotations, 2 categories (dog, cat)"
    data = json.loads(out.read_text())
    assert [img["file_name"] for img in data["images"]] == ["../VOC2007/JPEGImages/000002.jpg", "../VOC2007/JPEGImages/000001.jpg"]
    assert [a["bbox"] for a in data["annotations"]] == [[10, 2, 40, 18], [0, 1, 10, 11], [4, 5, 16, 20]]

    ds = load_coco(out)  # the images are found from the JSON's folder, as tools/train.py --data does
    assert ds.class_names == ["dog", "cat"] and ds.annotation_file == str(out)
    assert [r.path for r in ds.records] == [str(out.parent / img["file_name"]) for img in data["images"]]
    np.testing.assert_array_equal(ds[1].boxes, [[1, 0, 12, 10], [5, 4, 25, 20]])
    np.testing.assert_array_equal(ds[1].difficult, [False, True])
    assert ds.load_image(0).shape == (20, 50, 3)


def test_bad_input_is_one_error_line(tmp_path):
    path = write_csv(tmp_path, "imgs/a.png,1,2,11,12,dog\nimgs/a.png,x,2,11,12,dog\n")
    result = convert("--from", "csv", "--input", path, "--out", tmp_path / "out.json")
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert result.returncode == 1 and lines == [f"error: {path}:2: x1 'x' is not a number"], result.stderr
    assert not (tmp_path / "out.json").exists()
