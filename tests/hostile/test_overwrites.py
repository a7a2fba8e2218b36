"""Data loss: no output replaces an input, outputs of one run never share a file, and every
write is checked (OpenCV's ``imwrite`` only returns False)."""

from __future__ import annotations

import json
import shutil

import cv2
import numpy as np
import pytest

from detectlab.errors import DataError
from detectlab.inference.visualize import save_image
from tests.hostile.common import assert_one_line, assert_writes, jpeg, program, snapshot


@pytest.fixture(scope="module")
def weights(trained_run):
    return trained_run.workdir / "checkpoints" / "best.keras"


def test_predict_into_the_folder_of_its_images_is_refused(capsys, tmp_path, weights):
    photos = tmp_path / "photos"
    for name in ("a.jpg", "b.png"):
        jpeg(photos / name) if name.endswith("jpg") else cv2.imwrite(str(photos / name), np.zeros((20, 30, 3), np.uint8))
    before = snapshot(tmp_path)
    result = program(capsys, "predict", "--weights", weights, "--images", photos, "--out", photos)
    assert_one_line(result, 2, f"--out: writing {photos / 'a.jpg'} would replace the input {photos / 'a.jpg'} (--images)")
    assert_writes(tmp_path, before, allowed=[])


def test_predict_never_writes_over_a_video_it_reads(capsys, tmp_path, weights):
    clip = tmp_path / "clip.mp4"
    writer = cv2.VideoWriter(str(clip), cv2.VideoWriter_fourcc(*"mp4v"), 5, (64, 48))
    for k in range(3):
        writer.write(np.full((48, 64, 3), 40 * k, np.uint8))
    writer.release()
    before = snapshot(tmp_path)
    result = program(capsys, "predict", "--weights", weights, "--images", clip, "--out", tmp_path)
    assert_one_line(result, 2, f"writing {clip} would replace the input {clip}")
    assert_writes(tmp_path, before, allowed=[])


def test_predict_gives_each_image_its_own_annotated_copy(capsys, tmp_path, weights):
    """``photo.jpg`` + ``photo.png`` and two folders with the same names: one output each."""
    for path in ("x/photo.jpg", "x/photo.png", "a/1.jpg", "b/1.jpg"):
        jpeg(tmp_path / path, 40 + len(path), 32)
    before = snapshot(tmp_path)
    code, _, err = program(capsys, "predict", "--weights", weights, "--images", tmp_path / "x", tmp_path / "a",
                           tmp_path / "b", "--out", tmp_path / "out", "--score", "0")
    assert code == 0, err
    new = assert_writes(tmp_path, before, allowed=[tmp_path / "out"])
    out = tmp_path / "out"
    assert sorted(new) == sorted(str(out / n) for n in ("photo.jpg", "photo.png.jpg", "a/1.jpg", "b/1.jpg", "results.json"))
    sizes = {n: cv2.imread(str(out / n)).shape[1] for n in ("photo.jpg", "photo.png.jpg", "a/1.jpg", "b/1.jpg")}
    assert sizes == {"photo.jpg": 51, "photo.png.jpg": 51, "a/1.jpg": 47, "b/1.jpg": 47}  # each is its input's copy
    results = json.loads((out / "results.json").read_text())
    assert {r["file_name"] for r in results} <= {str(tmp_path / p) for p in ("x/photo.jpg", "x/photo.png", "a/1.jpg", "b/1.jpg")}


def test_a_write_that_fails_is_one_line_not_a_false_success(capsys, tmp_path, weights):
    wide = tmp_path / "wide.png"
    cv2.imwrite(str(wide), np.zeros((16, 70000, 3), np.uint8))
    result = program(capsys, "predict", "--weights", weights, "--images", wide, "--out", tmp_path / "out")
    assert_one_line(result, 1, f"{tmp_path / 'out' / 'wide.jpg'}: cannot write a 70000x16 image as JPEG")
    assert not (tmp_path / "out" / "wide.jpg").exists()
    with pytest.raises(DataError, match="cannot write this image"):
        save_image(tmp_path / "x.unknown", np.zeros((4, 4, 3), np.uint8))


@pytest.mark.skipif(not __import__("os").path.isdir("/proc/self"), reason="needs /proc")
def test_save_image_reports_imwrite_returning_false():
    with pytest.raises(DataError, match=r"/proc/detectlab_cannot_write\.png: OpenCV could not write this 4x4 image"):
        save_image("/proc/detectlab_cannot_write.png", np.zeros((4, 4, 3), np.uint8))


def test_split_refuses_one_file_for_both_sides_and_the_input_itself(capsys, tmp_path, shapes_dir):
    data = tmp_path / "all.json"
    shutil.copy(shapes_dir / "instances_val.json", data)
    images = shapes_dir
    before = snapshot(tmp_path)
    same = tmp_path / "s.json"
    assert_one_line(program(capsys, "split", "--data", data, "--images", images, "--val-ratio", "0.3",
                            "--out-train", same, "--out-val", same), 2,
                    f"--out-val and --out-train are the same file ({same})")
    assert_one_line(program(capsys, "split", "--data", data, "--images", images, "--val-ratio", "0.3",
                            "--out-val", data), 2, f"--out-val: writing {data} would replace the input {data} (--data)")
    assert_writes(tmp_path, before, allowed=[])


def test_convert_and_evaluate_never_write_over_their_inputs(capsys, tmp_path, shapes_dir):
    gt = tmp_path / "gt.json"
    shutil.copy(shapes_dir / "instances_val.json", gt)
    detections = tmp_path / "dt.json"
    detections.write_text(json.dumps([{"image_id": 1, "category_id": 1, "bbox": [1, 1, 5, 5], "score": 0.5}]))
    before = snapshot(tmp_path)
    assert_one_line(program(capsys, "evaluate", "--gt", gt, "--detections", detections, "--out", detections), 2,
                    f"--out: writing {detections} would replace the input {detections} (--detections)")
    report = tmp_path / "m_per_class.csv"
    report.write_text("mine")
    before = snapshot(tmp_path)
    assert_one_line(program(capsys, "evaluate", "--gt", report, "--detections", detections, "--out", tmp_path / "m.json"),
                    2, f"writing {report} would replace the input {report} (--gt)")
    assert_one_line(program(capsys, "convert", "--from", "coco", "--to", "voc", "--input", gt, "--images", shapes_dir,
                            "--out", gt), 2, f"--out: writing {gt} would replace the input {gt} (--input)")
    assert_writes(tmp_path, before, allowed=[])


def test_a_yolo_or_voc_export_never_rewrites_the_annotations_it_reads(capsys, tmp_path):
    """``--to voc --out DS`` rewrites ``DS/Annotations``, ``--to yolo --out DS`` rewrites
    ``DS/data.yaml`` and ``DS/labels``: reading from there and writing there is refused."""
    from tests.data.test_formats import write_yolo_dataset

    data_yaml = write_yolo_dataset(tmp_path / "yolo")
    jpeg(tmp_path / "voc" / "JPEGImages" / "a.jpg")
    (tmp_path / "voc" / "Annotations").mkdir()
    (tmp_path / "voc" / "Annotations" / "a.xml").write_text(
        "<annotation><filename>a.jpg</filename><object><name>cat</name><bndbox><xmin>1</xmin><ymin>1</ymin>"
        "<xmax>9</xmax><ymax>9</ymax></bndbox></object></annotation>")
    before = snapshot(tmp_path)
    for argv, written, source in [
        (["--from", "voc", "--input", tmp_path / "voc" / "Annotations", "--images", tmp_path / "voc" / "JPEGImages",
          "--to", "voc", "--out", tmp_path / "voc"], tmp_path / "voc" / "Annotations", tmp_path / "voc" / "Annotations"),
        (["--from", "yolo", "--input", data_yaml, "--split", "train", "--to", "yolo", "--out", tmp_path / "yolo"],
         tmp_path / "yolo" / "data.yaml", data_yaml),
        (["--from", "yolo", "--input", tmp_path / "yolo" / "images" / "train", "--to", "yolo", "--out", tmp_path / "yolo"],
         tmp_path / "yolo" / "images", tmp_path / "yolo" / "images" / "train"),
    ]:
        assert_one_line(program(capsys, "convert", *argv), 2,
                        f"--out: writing into {written} would replace the input {source} (--input)")
    assert_writes(tmp_path, before, allowed=[])
    code, out, err = program(capsys, "convert", "--from", "yolo", "--input", data_yaml, "--split", "train", "--to", "voc",
                             "--out", tmp_path / "yolo")  # another format beside the YOLO files: allowed
    assert code == 0, err
    assert (tmp_path / "yolo" / "Annotations" / "a.xml").is_file()
    assert_writes(tmp_path, before, allowed=[tmp_path / "yolo" / "Annotations", tmp_path / "yolo" / "ImageSets"])


def test_convert_reads_a_dataset_given_by_a_relative_path(capsys, tmp_path, monkeypatch):
    """Images named relative to the current folder were looked up again from the input's folder
    (``yx/yx/images/...``) once convert read every format through its registered reader."""
    from tests.data.test_formats import write_yolo_dataset

    write_yolo_dataset(tmp_path / "sub" / "yolo")
    monkeypatch.chdir(tmp_path)
    code, out, err = program(capsys, "convert", "--from", "yolo", "--input", "sub/yolo/data.yaml", "--split", "train",
                             "--out", "train.json")
    assert code == 0, err
    assert out.strip() == "train.json: 3 images, 2 annotations, 2 categories (cat, dog)"
    names = [i["file_name"] for i in json.loads((tmp_path / "train.json").read_text())["images"]]
    assert names == ["sub/yolo/images/train/a.jpg", "sub/yolo/images/train/b.png", "sub/yolo/images/train/c.jpg"]
