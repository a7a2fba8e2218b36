"""Input that used to end in a Python traceback: now one ``error:`` line naming the file, field
or flag (exit 1 for data and faults, 2 for flags and recipes), or the right result."""

from __future__ import annotations

import json
import os
import shutil
import subprocess

import numpy as np
import pytest

from detectlab.errors import DataError
from detectlab.checkpoints import resume_state
from tests.conftest import INSTANT
from tests.data.test_bad_data import write_coco
from tests.data.test_formats import write_yolo_dataset
from tests.hostile.common import assert_one_line, cvat_xml, jpeg, labelme, program, run_cases, shape

TINY = INSTANT / "yolov3_tiny_instant.yaml"
BOMB = "".join(f"{a}: &{a} [{', '.join([f'*{p}' if p else 'x'] * 9)}]\n"
               for p, a in zip(["", *"abcdefgh"], "abcdefghi"))  # 9^9 values from ~0.5 kB


# ------------------------------------------------------------------- text that is not UTF-8


def test_utf16_label_files_are_read(capsys, tmp_path):
    """Windows tools write UTF-16 with a byte-order mark: read like UTF-8."""
    data_yaml = write_yolo_dataset(tmp_path / "yolo")
    label = tmp_path / "yolo" / "labels" / "train" / "a.txt"
    label.write_text(label.read_text(), encoding="utf-16")
    (tmp_path / "yolo" / "data.yaml").write_text(data_yaml.read_text(), encoding="utf-16")
    code, out, err = program(capsys, "convert", "--from", "yolo", "--input", data_yaml, "--out", tmp_path / "y.json")
    assert code == 0 and "3 images, 2 annotations, 2 categories (cat, dog)" in out, err
    jpeg(tmp_path / "csv" / "a.jpg")
    (tmp_path / "csv" / "a.csv").write_text("a.jpg,1,2,30,20,cat\n", encoding="utf-16")
    code, out, err = program(capsys, "convert", "--from", "csv", "--input", tmp_path / "csv" / "a.csv", "--out", tmp_path / "c.json")
    assert code == 0 and "1 images, 1 annotations, 1 categories (cat)" in out, err
    assert json.loads((tmp_path / "c.json").read_text())["annotations"][0]["bbox"] == [1, 2, 29, 18]


@pytest.mark.parametrize("target", ["labels/train/a.txt", "data.yaml", "classes.txt", "a.csv", "ds/a.json", "via.json",
                                    "coco.json", "VOC/ImageSets/Main/train.txt"])
def test_binary_text_files_are_one_line(capsys, tmp_path, target):
    write_yolo_dataset(tmp_path)
    (tmp_path / "a.jpg").write_bytes((tmp_path / "images" / "train" / "a.jpg").read_bytes())
    (tmp_path / "VOC" / "ImageSets" / "Main").mkdir(parents=True)
    (tmp_path / "VOC" / "Annotations").mkdir()
    argv = {
        "labels/train/a.txt": ["--from", "yolo", "--input", tmp_path / "data.yaml"],
        "data.yaml": ["--from", "yolo", "--input", tmp_path / "data.yaml"],
        "classes.txt": ["--from", "yolo", "--input", tmp_path / "images", "--images", tmp_path / "images"],
        "a.csv": ["--from", "csv", "--input", tmp_path / "a.csv"],
        "ds/a.json": ["--from", "labelme", "--input", tmp_path / "ds"],
        "via.json": ["--from", "via", "--input", tmp_path / "via.json"],
        "coco.json": ["--from", "coco", "--to", "voc", "--input", tmp_path / "coco.json"],
        "VOC/ImageSets/Main/train.txt": ["--from", "voc", "--input", tmp_path / "VOC", "--split", "train"],
    }[target]
    if target == "classes.txt":
        argv[3] = tmp_path  # the folder holding classes.txt
    path = tmp_path / target
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"\x00\x85\xfe\xaa" + os.urandom(64))
    result = program(capsys, "convert", *argv, "--out", tmp_path / "out" / "o.json")
    assert_one_line(result, 1, f"{path}: not ")
    assert "UTF-8" in result[2][0] or "NUL bytes" in result[2][0]


# ------------------------------------------------------------------- malformed fields


@pytest.mark.parametrize("change, message", [
    ({"shapes": 5}, "'shapes' must be a list of shapes, got int"),
    ({"imagePath": "."}, "imagePath '.' is not an image file name"),
    ({"imagePath": ""}, "'imagePath' is empty"),
    ({"shapes": [{"label": "cat", "points": [[1, 1], [5, 5]], "shape_type": ["rectangle"]}]},
     "shape 0: shape_type must be a string"),
    ({"shapes": [{"label": "cat", "points": [[1, 10 ** 400], [5, 5], [9, 1]]}]}, "shape 0: points must be [[x, y], ...] numbers"),
])
def test_labelme_fields_of_the_wrong_kind(capsys, tmp_path, change, message):
    jpeg(tmp_path / "a.jpg")
    path = labelme(tmp_path, [shape([[1, 1], [9, 1], [9, 9]])], "a.jpg", None)
    path.write_text(json.dumps({**json.loads(path.read_text()), "imageData": "/9j/", **change}))
    result = program(capsys, "convert", "--from", "labelme", "--input", tmp_path, "--out", tmp_path / "out" / "o.json")
    assert_one_line(result, 1, f"{path}: {message}")


def test_cvat_rotation_that_is_not_a_number(capsys, tmp_path):
    jpeg(tmp_path / "a.jpg")
    xml = cvat_xml(tmp_path / "a.xml", '<image id="0" name="a.jpg" width="64" height="48"><box label="cat" xtl="1" ytl="1" '
                                       'xbr="9" ybr="9" rotation="abc"/></image>')
    assert_one_line(program(capsys, "convert", "--from", "cvat", "--input", xml, "--out", tmp_path / "o.json"), 1,
                    f"{xml}: image 0 (a.jpg): box 0: rotation 'abc' is not a number")


@pytest.mark.parametrize("change, message", [
    ({"image_id": [1]}, "result 0: 'image_id' must be an integer, got '[1]'"),
    ({"category_id": {"a": 1}}, "result 0: 'category_id' must be an integer"),
    ({"file_name": ["a.jpg"]}, "result 0: 'file_name' must be a string, got list"),
    ({"bbox": [1, 1, -5, 4]}, "result 0: 'bbox' must be 4 numbers [x, y, w, h] with w, h >= 0"),
    ({"segmentation": {"size": [30, 40], "counts": "PPPP"}}, "result 0: 'segmentation' RLE compressed counts must be"),
    ({"segmentation": {"size": [30, 40], "counts": [1200]}}, "result 0: 'segmentation' must be a compressed RLE (counts a string)"),
])
def test_results_fields_of_the_wrong_kind(capsys, tmp_path, change, message):
    gt = write_coco(tmp_path, n=1)
    (tmp_path / "dt.json").write_text(json.dumps([{"image_id": 100, "category_id": 1, "bbox": [1, 1, 5, 5], "score": 0.5,
                                                   **change}]))
    result = program(capsys, "evaluate", "--gt", gt, "--detections", tmp_path / "dt.json", "--out", tmp_path / "m.json")
    assert_one_line(result, 1, f"{tmp_path / 'dt.json'}: {message}")


def test_results_with_masks_only_are_scored(capsys, tmp_path):
    """Mask-only results (the segm challenge's format) ended in pycocotools' KeyError 'id': the
    box score uses each mask's box, the report draws them."""
    from pycocotools import mask as mask_utils

    gt = json.loads(write_coco(tmp_path, n=1).read_text())
    x, y, w, h = gt["annotations"][0]["bbox"]
    image = gt["images"][0]
    gt["annotations"][0]["segmentation"] = [[x, y, x + w, y, x + w, y + h, x, y + h]]
    (tmp_path / "gt.json").write_text(json.dumps(gt))
    mask = np.zeros((image["height"], image["width"]), np.uint8)
    mask[int(y):int(y + h), int(x):int(x + w)] = 1
    rle = mask_utils.encode(np.asfortranarray(mask))
    (tmp_path / "dt.json").write_text(json.dumps([{"image_id": image["id"], "category_id": 1,
                                                   "score": 0.9, "segmentation": {**rle, "counts": rle["counts"].decode()}}]))
    code, out, err = program(capsys, "evaluate", "--gt", tmp_path / "gt.json", "--detections", tmp_path / "dt.json",
                             "--out", tmp_path / "m.json")
    assert code == 0, err
    metrics = json.loads((tmp_path / "m.json").read_text())
    assert metrics["bbox"]["AP50"] == pytest.approx(1.0) and metrics["segm"]["AP50"] == pytest.approx(1.0)
    assert (tmp_path / "m_confusion_matrix.png").is_file()


def test_ground_truth_without_iscrowd_and_area_is_scored(capsys, tmp_path):
    """COCO files that leave out ``iscrowd`` and ``area`` (load_coco reads them) ended in
    pycocotools' KeyError; a wrong ``iscrowd`` is one line."""
    gt = write_coco(tmp_path, n=2)
    assert "iscrowd" not in gt.read_text() and "area" not in gt.read_text()
    (tmp_path / "dt.json").write_text(json.dumps([{"image_id": 100 + k, "category_id": 1, "bbox": [5, 5, 10, 10], "score": 0.9}
                                                  for k in range(2)]))
    code, _, err = program(capsys, "evaluate", "--gt", gt, "--detections", tmp_path / "dt.json", "--out", tmp_path / "m.json")
    assert code == 0, err
    assert json.loads((tmp_path / "m.json").read_text())["bbox"]["AP"] == pytest.approx(1.0)
    data = json.loads(gt.read_text())
    data["annotations"][1]["iscrowd"] = "yes"
    gt.write_text(json.dumps(data))
    assert_one_line(program(capsys, "evaluate", "--gt", gt, "--detections", tmp_path / "dt.json", "--out", tmp_path / "m.json"),
                    1, f"{gt}: annotation 2 (img1.jpg): iscrowd must be 0 or 1, got 'yes'")


# ------------------------------------------------------------------- output paths


@pytest.fixture(scope="module")
def weights(trained_run):
    return trained_run.workdir / "checkpoints" / "best.keras"


def _output_cases(tmp_path, weights, shapes_dir, target):
    """``(command, argv)`` of every program with its output flag pointing at ``target``."""
    val = shapes_dir / "instances_val.json"
    (tmp_path / "dt.json").write_text("[]")
    jpeg(tmp_path / "lm" / "a.jpg")
    labelme(tmp_path / "lm", [shape([[1, 1], [9, 1], [9, 9]])])
    return {
        "convert": ["--from", "coco", "--to", "yolo", "--input", val, "--out", target],
        "convert-json": ["--from", "labelme", "--input", tmp_path / "lm", "--out", target / "o.json"],
        "split": ["--data", val, "--val-ratio", "0.3", "--out-train", target / "t.json"],
        "shapes": ["--out", target, "--train", "1", "--val", "1"],
        "train": ["--config", TINY, "--workdir", target, "--epochs", "1"],
        "predict": ["--weights", weights, "--images", shapes_dir / "val" / "000000.jpg", "--out", target],
        "evaluate": ["--gt", val, "--detections", tmp_path / "dt.json", "--out", target / "m.json"],
        "export": ["--weights", weights, "--format", "saved_model", "--out", target],
        "browse": ["--config", TINY, "--out", target],
        "convert-darknet": ["--config", TINY, "--weights", weights, "--out", target / "x.h5"],
    }


@pytest.mark.parametrize("command", ["convert", "split", "shapes", "train", "predict", "evaluate", "export", "browse",
                                     "convert-darknet"])
def test_an_output_path_through_a_file_is_one_line(capsys, tmp_path, weights, shapes_dir, command):
    blocker = tmp_path / "afile"
    blocker.write_text("not a folder")
    argv = _output_cases(tmp_path, weights, shapes_dir, blocker)[command]
    flag = next(a for a in argv if str(a).startswith("--") and argv[argv.index(a) + 1] in
                (blocker, blocker / "t.json", blocker / "m.json", blocker / "x.h5"))
    result = program(capsys, command, *argv)
    assert_one_line(result, 2, flag, str(blocker))
    assert "is a file, not a folder" in result[2][0]
    assert blocker.read_text() == "not a folder"


def test_output_files_that_are_folders_are_one_line(capsys, tmp_path, shapes_dir):
    folder = tmp_path / "folder"
    folder.mkdir()
    (tmp_path / "dt.json").write_text("[]")
    val = shapes_dir / "instances_val.json"
    assert_one_line(program(capsys, "evaluate", "--gt", val, "--detections", tmp_path / "dt.json", "--out", folder), 2,
                    f"--out {folder}: is a folder, not a file")
    jpeg(tmp_path / "lm" / "a.jpg")
    labelme(tmp_path / "lm", [shape([[1, 1], [9, 1], [9, 9]])])
    assert_one_line(program(capsys, "convert", "--from", "labelme", "--input", tmp_path / "lm", "--out", folder), 2,
                    f"--out {folder}: is a folder, not a file")


def _read_only_prefix(folder):
    """How to run the driver with ``folder`` read-only: chmod for a normal user; for root (who
    writes anyway), a read-only bind mount in a user and mount namespace (``unshare``)."""
    if os.geteuid() != 0:
        folder.chmod(0o555)
        return []
    script = 'mount --bind "$0" "$0" && mount -o remount,ro,bind "$0" "$0" && exec "$@"'
    prefix = ["unshare", "-r", "-m", "sh", "-c", script, str(folder)]
    probe = subprocess.run([*prefix, "sh", "-c", f'touch "{folder}/probe"'], capture_output=True)
    if shutil.which("unshare") is None or probe.returncode == 0 or b"Read-only" not in probe.stderr:
        pytest.skip("running as root without user namespaces: cannot make a folder read-only here")
    return prefix


def test_read_only_output_folders_are_one_line(tmp_path, weights, shapes_dir):
    read_only = tmp_path / "ro"
    read_only.mkdir()
    commands = _output_cases(tmp_path, weights, shapes_dir, read_only / "sub")
    cases = [{"id": name, "command": name.removesuffix("-json"), "argv": list(map(str, argv)), "cwd": str(tmp_path),
              "allowed": [str(tmp_path)]} for name, argv in commands.items()]
    reports = run_cases(tmp_path, cases, prefix=_read_only_prefix(read_only))
    for name, report in reports.items():
        assert report["traceback"] is None, (name, report["traceback"])
        assert_one_line(report, 2, str(read_only), "cannot write in", "(read-only or no permission)")
    assert set(reports) == set(commands) and not list(read_only.iterdir())


# ------------------------------------------------------------------- resume, checkpoints, weights


def test_resume_from_a_damaged_state_or_checkpoint(capsys, tmp_path, trained_run, detectlab_log):
    run = tmp_path / "run"
    shutil.copytree(trained_run.workdir / "checkpoints", run / "checkpoints")
    shutil.copy(trained_run.workdir / "config.yaml", run / "config.yaml")
    checkpoints = run / "checkpoints"
    state = json.loads((checkpoints / "state.json").read_text())
    assert state["checkpoint"] == "epoch_004.keras" and (checkpoints / "epoch_003.keras").is_file()
    # a half-written newest checkpoint: resume from the one before, and say so
    newest = checkpoints / "epoch_004.keras"
    newest.write_bytes(newest.read_bytes()[: newest.stat().st_size // 2])
    assert resume_state(checkpoints) == {"epoch": 3, "checkpoint": "epoch_003.keras"}
    assert any(m.startswith(f"{newest}: not a Keras .keras archive") and m.endswith(
        "resuming from epoch_003.keras (epoch 3), the newest intact checkpoint") for m in detectlab_log.messages)
    # a damaged state.json: the same
    (checkpoints / "state.json").write_text('{"epoch": 4, "checkp')
    assert resume_state(checkpoints)["checkpoint"] == "epoch_003.keras"
    # nothing intact left: one line naming the file, from the tool
    (checkpoints / "epoch_003.keras").write_bytes(b"PK\x03\x04 cut")
    result = program(capsys, "train", "--workdir", run, "--resume", "--epochs", "5")
    assert_one_line(result, 1, f"{checkpoints / 'state.json'}: invalid JSON at line 1 column ",
                    f"no intact earlier checkpoint in {checkpoints} to resume from")


def test_random_bytes_named_keras_are_not_reported_as_missing(capsys, tmp_path, trained_run, shapes_dir):
    fake = tmp_path / "run" / "checkpoints" / "best.keras"
    fake.parent.mkdir(parents=True)
    shutil.copy(trained_run.workdir / "config.yaml", tmp_path / "run" / "config.yaml")
    fake.write_bytes(np.random.default_rng(0).bytes(3000))
    line = f"{fake}: not a Keras .keras archive (damaged or not a zip file"
    assert_one_line(program(capsys, "predict", "--weights", fake, "--images", shapes_dir / "val", "--out", tmp_path / "p"), 1, line)
    assert_one_line(program(capsys, "evaluate", "--weights", fake, "--data", shapes_dir / "instances_val.json",
                            "--out", tmp_path / "m.json"), 1, line)
    assert_one_line(program(capsys, "train", "--config", TINY, "--workdir", tmp_path / "w", "--weights", fake,
                            "--epochs", "1", "--val", "none"), 1, line)


# ------------------------------------------------------------------- sizes, counts, YAML


def test_kmeans_with_more_anchors_than_boxes(capsys, tmp_path):
    path = write_coco(tmp_path, n=2)
    assert_one_line(program(capsys, "kmeans-anchors", "--data", path, "-k", "9"), 2,
                    f"-k 9: {path} has 2 boxes (crowd regions left out); k-means needs at least as many boxes as anchors")


def test_an_image_size_no_machine_can_hold(capsys, tmp_path):
    assert_one_line(program(capsys, "train", "--config", TINY, "--workdir", tmp_path / "run", "--image-size", "100000"), 2,
                    "model.image_size: expected between 1 and 8192 pixels, got 100000")
    assert not (tmp_path / "run").exists()


def test_yaml_alias_bombs_are_refused_before_they_expand(capsys, tmp_path):
    assert len(BOMB) < 600
    recipe = tmp_path / "bomb.yaml"
    recipe.write_text(f"base: {TINY}\n{BOMB}model:\n  anchors: *i\n")
    refused = "YAML expands to more than 1,000,000 values through its aliases"
    assert_one_line(program(capsys, "train", "--config", recipe, "--workdir", tmp_path / "run"), 2, f"{recipe}: {refused}")
    flow = ", ".join([f"&a [{', '.join(['1'] * 9)}]"] + [f"&{c} [{', '.join([f'*{p}'] * 9)}]" for p, c in zip("abcdefgh", "bcdefghi")])
    assert_one_line(program(capsys, "train", "--config", TINY, "--workdir", tmp_path / "run", "--set", f"model.anchors=[{flow}]"),
                    2, f"--set 'model.anchors=[&a [1, 1, ", f"]': value: {refused}")
    data_yaml = write_yolo_dataset(tmp_path / "yolo")
    data_yaml.write_text(BOMB + "train: images/train\nnames: *i\n")
    assert_one_line(program(capsys, "convert", "--from", "yolo", "--input", data_yaml, "--out", tmp_path / "o.json"), 1,
                    f"{data_yaml}: {refused}")


def test_a_zero_size_image_is_one_line_from_the_predictor(trained_run):
    from detectlab.inference.predictor import Predictor

    predictor = Predictor(trained_run.model, 64)
    with pytest.raises(DataError, match=r"expected an RGB image of at least 1x1 pixels \(H, W, 3\), got shape \(0, 0, 3\)"):
        predictor.predict([np.zeros((0, 0, 3), np.uint8)])
