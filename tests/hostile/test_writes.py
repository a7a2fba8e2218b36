"""Security: a dataset file never chooses where detectlab writes. LabelMe ``imageData`` is
written under the dataset folder, or the folder the user names (``--images``), with a plain
file name; anything else is one line, and nothing appears outside the output folders. Every
input keeps its bytes."""

from __future__ import annotations

import base64
import json
import os

import pytest

from tests.conftest import INSTANT
from tests.hostile.common import (
    assert_one_line, assert_writes, jpeg, jpeg_base64, labelme, program, shape, snapshot,
)

TRIANGLE = [shape([[2, 2], [30, 2], [16, 20]])]


@pytest.mark.parametrize("image_path, why", [
    ("../../escaped.jpg", "points outside the dataset folder"),
    ("sub/../../escaped.jpg", "points outside the dataset folder"),
    ("..\\..\\escaped.jpg", "points outside the dataset folder"),  # LabelMe on Windows
    ("{outside}/abs.jpg", "points outside the dataset folder"),
    ("{outside}/run.sh", "is not an image file name"),
    (".", "is not an image file name"),
    ("a\u0000b.jpg", "holds control characters"),
])
def test_labelme_image_data_cannot_choose_where_it_is_written(capsys, tmp_path, image_path, why):
    outside = tmp_path / "outside"
    outside.mkdir()
    image_path = image_path.format(outside=outside)
    dataset = tmp_path / "work" / "ds" / "labelme"
    json_path = labelme(dataset, TRIANGLE, image_path, jpeg_base64())
    before = snapshot(tmp_path)
    result = program(capsys, "convert", "--from", "labelme", "--input", dataset, "--out", tmp_path / "out" / "train.json")
    assert_one_line(result, 1, str(json_path), f"imagePath {image_path!r}", why, "refusing to write imageData")
    assert_writes(tmp_path, before, allowed=[tmp_path / "out"])
    assert not list(tmp_path.parent.glob("escaped.jpg")) and not list(outside.iterdir())


def test_a_shell_script_as_image_data_is_not_written_even_inside_the_dataset(capsys, tmp_path):
    dataset = tmp_path / "labelme"
    script = base64.b64encode(b"#!/bin/sh\necho pwned\n").decode()
    json_path = labelme(dataset, TRIANGLE, "photo.jpg", script)
    before = snapshot(tmp_path)
    result = program(capsys, "convert", "--from", "labelme", "--input", dataset, "--out", tmp_path / "out.json")
    assert_one_line(result, 1, str(json_path), "imageData is not an image")
    assert_writes(tmp_path, before, allowed=[])


def test_train_on_a_hostile_labelme_folder_writes_nothing_outside(capsys, tmp_path):
    """The same rule when the folder is training data (``train.py --data``), before any training."""
    outside = tmp_path / "outside"
    outside.mkdir()
    dataset = tmp_path / "labelme"
    labelme(dataset, TRIANGLE, str(outside / "evil.jpg"), jpeg_base64())
    before = snapshot(tmp_path)
    result = program(capsys, "train", "--config", INSTANT / "yolov3_tiny_instant.yaml", "--workdir", tmp_path / "run",
                     "--data", dataset, "--val", "none", "--epochs", "1")
    assert_one_line(result, 1, "points outside the dataset folder", "refusing to write imageData")
    assert_writes(tmp_path, before, allowed=[tmp_path / "run"])
    assert not list(outside.iterdir()) and not (tmp_path / "run" / "checkpoints").exists()


def test_image_data_goes_inside_the_dataset_or_into_the_named_folder(capsys, tmp_path):
    """What is allowed: a missing image inside the dataset folder is written there; with
    ``--images DIR`` every embedded image goes to DIR under its sanitised name."""
    dataset = tmp_path / "labelme"
    labelme(dataset, TRIANGLE, "pics/a.jpg", jpeg_base64(), name="a.json")
    labelme(dataset, TRIANGLE, "b.jpg", jpeg_base64(32, 24), name="b.json", size=(32, 24))
    before = snapshot(tmp_path)
    code, out, _ = program(capsys, "convert", "--from", "labelme", "--input", dataset, "--out", tmp_path / "out" / "a.json")
    assert code == 0 and "2 images, 2 annotations" in out
    assert sorted(assert_writes(tmp_path, before, allowed=[dataset, tmp_path / "out"])) == sorted(
        map(str, [dataset / "pics" / "a.jpg", dataset / "b.jpg", tmp_path / "out" / "a.json"]))

    other = tmp_path / "other"
    labelme(other, TRIANGLE, "../../../far away/c d.jpg", jpeg_base64())
    before = snapshot(tmp_path)
    code, _, _ = program(capsys, "convert", "--from", "labelme", "--input", other, "--images", tmp_path / "extracted",
                         "--out", tmp_path / "out" / "b.json")
    assert code == 0
    new = assert_writes(tmp_path, before, allowed=[tmp_path / "extracted", tmp_path / "out"])
    assert str(tmp_path / "extracted" / "c d.jpg") in new


def test_a_symlink_inside_the_dataset_does_not_lead_writes_out(capsys, tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    dataset = tmp_path / "labelme"
    dataset.mkdir()
    (dataset / "link").symlink_to(outside)
    labelme(dataset, TRIANGLE, "link/x.jpg", jpeg_base64())
    before = snapshot(tmp_path)
    result = program(capsys, "convert", "--from", "labelme", "--input", dataset, "--out", tmp_path / "out.json")
    assert_one_line(result, 1, "imagePath 'link/x.jpg' points outside the dataset folder")
    assert_writes(tmp_path, before, allowed=[])
    assert not list(outside.iterdir())


def test_yolo_export_into_the_folder_of_its_images_keeps_them(capsys, tmp_path, shapes_dir):
    """``convert --to yolo --out DIR`` where ``DIR/images/train`` already holds the images:
    they stay the same files (before, each was unlinked and replaced by a link to itself)."""
    images = tmp_path / "yolo" / "images" / "train"
    images.mkdir(parents=True)
    for name in ("000000.jpg", "000001.jpg"):
        (images / name).write_bytes((shapes_dir / "train" / name).read_bytes())
    coco = tmp_path / "mine.json"
    data = json.loads((shapes_dir / "instances_train.json").read_text().replace('"train/', '"yolo/images/train/'))
    keep = {i["id"] for i in data["images"][:2]}
    data["images"] = data["images"][:2]
    data["annotations"] = [a for a in data["annotations"] if a["image_id"] in keep]
    coco.write_text(json.dumps(data))
    before = snapshot(images)
    code, _, err = program(capsys, "convert", "--from", "coco", "--to", "yolo", "--input", coco, "--out", tmp_path / "yolo")
    assert code == 0, err
    assert snapshot(images) == before and not any(os.path.islink(p) for p in images.iterdir())
    assert len(list((tmp_path / "yolo" / "labels" / "train").glob("*.txt"))) == 2
