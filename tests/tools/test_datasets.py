"""datasets/convert.py and datasets/split.py (their flags and code in-process, one-line errors
and --help as a user runs them), and YOLO-txt / LabelMe data training through tools/train.py."""

import importlib.util
import json
import os
import subprocess
import sys

import numpy as np

from detectlab.data.coco import load_coco
from tests.conftest import ENV, INSTANT, ROOT, tool
from tests.data.test_formats import coco_fixture, write_cvat, write_flat_voc, write_labelme, write_yolo_dataset

TINY = INSTANT / "yolov3_tiny_instant.yaml"


sys.path.insert(0, str(ROOT / "datasets"))  # for datasets/_args.py


def script(name):
    spec = importlib.util.spec_from_file_location(name, ROOT / "datasets" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


CONVERT, SPLIT = script("convert"), script("split")


def convert(*args, capsys=None):
    """Run convert.py's parser and conversion in this process; returns its stdout lines."""
    assert CONVERT.convert(CONVERT.parse_args([str(a) for a in args])) == 0
    return capsys.readouterr().out.splitlines()


def test_help_and_flag_errors_do_not_import_tensorflow():
    for script in ("convert.py", "split.py"):
        command = [sys.executable, "-X", "importtime", str(ROOT / "datasets" / script), "--help"]
        result = subprocess.run(command, capture_output=True, text=True, env=ENV, timeout=60)
        imported = [line.rsplit("|", 1)[-1].strip() for line in result.stderr.splitlines()]
        assert result.returncode == 0 and "usage:" in result.stdout
        assert "argparse" in imported and not [m for m in imported if m.startswith(("tensorflow", "detectlab", "keras"))]
    bad = tool("datasets/convert.py", "--from", "yolo", "--out", "x.json")
    assert bad.returncode == 2 and bad.stderr == (
        "convert.py: error: argument --input is required (or --annotations for --from voc) (see --help)\n")


def test_yolo_data_yaml_to_coco_per_split(tmp_path, capsys):
    data_yaml = write_yolo_dataset(tmp_path / "yolo")
    for split, line in (("train", "3 images, 2 annotations"), ("val", "1 images, 1 annotations")):
        out = tmp_path / f"{split}.json"
        printed = convert("--from", "yolo", "--input", data_yaml, "--split", split, "--out", out, capsys=capsys)
        assert printed == [f"{out}: {line}, 2 categories (cat, dog)"]
    data = json.loads((tmp_path / "train.json").read_text())
    assert data["images"][0]["file_name"] == "yolo/images/train/a.jpg"
    assert len(load_coco(tmp_path / "val.json")) == 1


def test_malformed_yolo_line_is_one_error_line(tmp_path):
    data_yaml = write_yolo_dataset(tmp_path)
    (tmp_path / "labels/train/a.txt").write_text("0 0.5 0.5 0.1\n")
    result = tool("datasets/convert.py", "--from", "yolo", "--input", data_yaml, "--out", tmp_path / "out.json")
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert result.returncode == 1 and lines == [
        f"error: {tmp_path / 'labels/train/a.txt'}:1: expected 'class cx cy w h' or 'class x1 y1 x2 y2 x3 y3 ...', got 4 values"
    ], result.stderr


def test_labelme_and_cvat_to_coco(tmp_path, capsys):
    folder = write_labelme(tmp_path / "lm")
    printed = convert("--from", "labelme", "--input", folder, "--out", tmp_path / "lm.json", capsys=capsys)
    assert printed == [f"{tmp_path / 'lm.json'}: 2 images, 3 annotations, 2 categories (cat, dog)"]
    xml = write_cvat(tmp_path / "cvat")
    printed = convert("--from", "cvat", "--input", xml, "--out", tmp_path / "cvat.json", capsys=capsys)
    assert printed == [f"{tmp_path / 'cvat.json'}: 2 images, 3 annotations, 3 categories (person, car, tree)"]
    assert json.loads((tmp_path / "cvat.json").read_text())["annotations"][0]["attributes"]["occluded"] is True


def test_flat_voc_folders_with_a_seeded_split(tmp_path, capsys):
    root = write_flat_voc(tmp_path / "set")
    out = tmp_path / "voc.json"
    args = ("--from", "voc", "--annotations", root / "annotations", "--images", root / "images", "--out", out,
            "--val-ratio", "0.34", "--seed", "3")
    assert convert(*args, capsys=capsys) == [
        f"{tmp_path / 'voc_train.json'}: 4 images, 4 annotations, 2 categories (cat, dog)",
        f"{tmp_path / 'voc_val.json'}: 2 images, 2 annotations, 2 categories (cat, dog)",
    ]
    val = json.loads((tmp_path / "voc_val.json").read_text())
    assert sorted(c["name"] for c in val["categories"]) == ["cat", "dog"]
    assert {a["category_id"] for a in val["annotations"]} == {1, 2}  # stratified: one of each class
    convert(*args, capsys=capsys)
    assert json.loads((tmp_path / "voc_val.json").read_text()) == val  # same seed, same split


def test_coco_to_yolo_and_voc_folders(tmp_path, capsys):
    data = coco_fixture(tmp_path)
    printed = convert("--from", "coco", "--to", "yolo", "--input", data, "--out", tmp_path / "y", "--split", "val", capsys=capsys)
    assert printed == [f"{tmp_path / 'y/data.yaml'} (val): 3 images, 3 annotations, 2 categories (cat, dog)"]
    assert (tmp_path / "y/labels/val/q.txt").read_text() == "1 0.470000 0.466429 0.804000 0.715714\n"
    convert("--from", "coco", "--to", "voc", "--input", data, "--out", tmp_path / "v", capsys=capsys)
    xml = (tmp_path / "v/Annotations/q.xml").read_text()
    assert "<name>dog</name>" in xml and "<xmin>4</xmin><ymin>9</ymin><xmax>44</xmax><ymax>58</ymax>" in xml


def test_split_tool(tmp_path, capsys):
    data = coco_fixture(tmp_path)
    args = ["--data", str(data), "--val-ratio", "0.3", "--seed", "0", "--out-val", str(tmp_path / "sub/val.json")]
    assert SPLIT.split(SPLIT.parse_args(args)) == 0
    assert capsys.readouterr().out.splitlines() == [
        f"{tmp_path / 'all_train.json'}: 2 images, 3 annotations", f"{tmp_path / 'sub/val.json'}: 1 images, 0 annotations"]
    train, val = load_coco(tmp_path / "all_train.json"), load_coco(tmp_path / "sub/val.json")
    assert [os.path.normpath(r.path) for r in val] == [str(tmp_path / "r.png")] and len(train) == 2
    assert json.loads((tmp_path / "sub/val.json").read_text())["images"][0]["file_name"].startswith("../")
    bad = tool("datasets/split.py", "--data", data, "--val-ratio", "2")
    assert bad.returncode == 2 and bad.stderr == "split.py: error: argument --val-ratio: must be between 0 and 1, got 2.0 (see --help)\n"


def textured(path, size, seed):
    import cv2

    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), np.random.default_rng(seed).integers(0, 255, (size, size, 3), np.uint8))


def train_run(tmp_path, *args):
    result = tool("tools/train.py", "--config", TINY, "--workdir", tmp_path / "run", *args,
                  "--epochs", "1", "--steps-per-epoch", "2", "--batch-size", "2", "--quiet")
    assert result.returncode == 0, result.stderr[-3000:]
    assert (tmp_path / "run" / "checkpoints" / "last.keras").is_file()
    return (tmp_path / "run" / "history.csv").read_text()


def test_a_yolo_txt_dataset_trains_end_to_end(tmp_path):
    root = tmp_path / "yolo"
    for split, n in (("train", 4), ("val", 2)):
        for k in range(n):
            textured(root / f"images/{split}/{k}.jpg", 64, k)
            (root / f"labels/{split}").mkdir(parents=True, exist_ok=True)
            (root / f"labels/{split}/{k}.txt").write_text(f"{k % 2} 0.5 0.5 0.4 0.3\n1 0.2 0.2 0.3 0.1 0.3 0.3\n")
    (root / "data.yaml").write_text("path: .\ntrain: images/train\nval: images/val\nnames: [a, b]\n")
    history = train_run(tmp_path, "--data", root / "data.yaml", "--val", root / "data.yaml")
    assert "val_loss" in history.splitlines()[0] and len(history.splitlines()) == 2


def test_a_labelme_dataset_trains_end_to_end(tmp_path):
    from tests.data.test_formats import labelme_doc, shape

    for k in range(4):
        textured(tmp_path / f"lm/{k}.png", 64, k)
        doc = labelme_doc(f"{k}.png", 64, 64, [shape("a", [[5, 5], [30, 40]], "rectangle"),
                                                shape("b", [[40, 10], [60, 10], [50, 30]])])
        (tmp_path / f"lm/{k}.json").write_text(json.dumps(doc))
    history = train_run(tmp_path, "--data", tmp_path / "lm", "--val", "none")
    assert len(history.splitlines()) == 2
