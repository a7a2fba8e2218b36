"""Inputs that used to be accepted and give a wrong result: each is now either one line naming
the file and field, or read correctly (a count in the log where something is left out)."""

from __future__ import annotations

import json
import shutil

from detectlab.commands import tool_module
from detectlab.config import load_config
from tests.conftest import INSTANT
from tests.data.test_formats import write_yolo_dataset
from tests.hostile.common import assert_one_line, cvat_xml, jpeg, labelme, program, shape

TINY = INSTANT / "yolov3_tiny_instant.yaml"


def test_a_voc_corner_at_1e308_is_refused_not_stored_with_a_617_digit_area(capsys, tmp_path):
    jpeg(tmp_path / "JPEGImages" / "a.jpg")
    (tmp_path / "Annotations").mkdir()
    xml = tmp_path / "Annotations" / "a.xml"
    xml.write_text("<annotation><filename>a.jpg</filename><object><name>cat</name><bndbox><xmin>1</xmin><ymin>1</ymin>"
                   "<xmax>1e308</xmax><ymax>10</ymax></bndbox></object></annotation>")
    result = program(capsys, "convert", "--from", "voc", "--input", tmp_path, "--out", tmp_path / "out.json")
    assert_one_line(result, 1, f"{xml}: object 1: box point (1e+308, 10) lies far outside the 64x48 image")
    assert not (tmp_path / "out.json").exists()


def test_evaluate_gt_with_a_nan_box_is_refused_not_scored(capsys, tmp_path, shapes_dir):
    gt = json.loads((shapes_dir / "instances_val.json").read_text())
    results = [{"image_id": a["image_id"], "category_id": a["category_id"], "bbox": a["bbox"], "score": 0.9}
               for a in gt["annotations"]]
    (tmp_path / "dt.json").write_text(json.dumps(results))
    (tmp_path / "gt.json").write_text(json.dumps(gt))
    code, _, _ = program(capsys, "evaluate", "--gt", tmp_path / "gt.json", "--detections", tmp_path / "dt.json",
                         "--out", tmp_path / "m.json")
    assert code == 0 and json.loads((tmp_path / "m.json").read_text())["bbox"]["AP50"] == 1.0  # the same file, intact
    first = gt["annotations"][0]
    first["bbox"] = [float("nan")] * 4
    (tmp_path / "gt.json").write_text(json.dumps(gt))
    result = program(capsys, "evaluate", "--gt", tmp_path / "gt.json", "--detections", tmp_path / "dt.json",
                     "--out", tmp_path / "m2.json")
    file_name = next(i["file_name"] for i in gt["images"] if i["id"] == first["image_id"])
    assert_one_line(result, 1, f"{tmp_path / 'gt.json'}: annotation {first['id']} ({file_name}): "
                               "bbox [nan, nan, nan, nan] has a NaN or infinite value")
    assert "invalid_boxes" not in result[2][0]  # evaluate --gt skips nothing: no hint about skipping


def test_an_image_listed_twice_is_refused_not_split_into_two_images(capsys, tmp_path):
    jpeg(tmp_path / "a.jpg")
    box = '<box label="cat" xtl="1" ytl="1" xbr="9" ybr="9"/>'
    xml = cvat_xml(tmp_path / "a.xml", f'<image id="0" name="a.jpg" width="64" height="48">{box}</image>'
                                       f'<image id="3" name="a.jpg" width="64" height="48">{box}</image>')
    assert_one_line(program(capsys, "convert", "--from", "cvat", "--input", xml, "--out", tmp_path / "o.json"), 1,
                    f"{xml}: image 3 (a.jpg): the image {tmp_path / 'a.jpg'} is listed twice (also {xml}: image 0 (a.jpg))")
    one = labelme(tmp_path / "lm", [shape([[1, 1], [9, 1], [9, 9]])], "../a.jpg", name="1.json")
    two = labelme(tmp_path / "lm", [shape([[2, 2], [9, 2], [9, 9]])], "../a.jpg", name="2.json")
    assert_one_line(program(capsys, "convert", "--from", "labelme", "--input", tmp_path / "lm", "--out", tmp_path / "o.json"),
                    1, f"{two}: the image {tmp_path / 'a.jpg'} is listed twice (also {one})")
    (tmp_path / "via.json").write_text(json.dumps({"a.jpg1": {"filename": "a.jpg", "regions": []},
                                                   "a.jpg2": {"filename": "a.jpg", "regions": []}}))
    assert_one_line(program(capsys, "convert", "--from", "via", "--input", tmp_path / "via.json", "--out", tmp_path / "o.json"),
                    1, f"{tmp_path / 'via.json'}: a.jpg2: the image {tmp_path / 'a.jpg'} is listed twice")


def test_cvat_tracks_are_counted_when_left_out(capsys, tmp_path, detectlab_log):
    jpeg(tmp_path / "a.jpg")
    xml = cvat_xml(tmp_path / "a.xml", '<image id="0" name="a.jpg" width="64" height="48"><box label="cat" xtl="1" ytl="1" '
                   'xbr="9" ybr="9"/></image><track id="0" label="cat"><box frame="0" xtl="2" ytl="2" xbr="9" ybr="9" '
                   'outside="0" occluded="0" keyframe="1"/><box frame="1" xtl="3" ytl="2" xbr="9" ybr="9" outside="0" '
                   'occluded="0" keyframe="1"/></track>')
    code, out, _ = program(capsys, "convert", "--from", "cvat", "--input", xml, "--out", tmp_path / "o.json")
    assert code == 0 and "1 images, 1 annotations" in out
    assert f"{xml}: skipped shapes that are not regions: 1 track (CVAT for video: 2 shapes)" in detectlab_log.messages


def test_a_gif_with_labels_is_counted_when_left_out(capsys, tmp_path, detectlab_log):
    write_yolo_dataset(tmp_path / "yolo")
    (tmp_path / "yolo" / "images" / "train" / "e.gif").write_bytes(b"GIF89a" + bytes(40))
    (tmp_path / "yolo" / "labels" / "train" / "e.txt").write_text("0 0.5 0.5 0.2 0.2\n")
    code, out, _ = program(capsys, "convert", "--from", "yolo", "--input", tmp_path / "yolo" / "data.yaml", "--out",
                           tmp_path / "o.json")
    assert code == 0 and "3 images, 2 annotations" in out
    warning = next(m for m in detectlab_log.messages if "formats detectlab does not read" in m)
    assert warning.startswith(f"{tmp_path / 'yolo' / 'images' / 'train'}: skipped 1 images") and "(e.gif)" in warning


def test_a_path_flag_stays_the_text_typed(capsys, tmp_path, monkeypatch):
    """``--data 0123`` was read by YAML as the octal number 83."""
    train = tool_module("train")
    for value in ("0123", "null", "yes", "[ab]+", "1e3"):
        args = train.parse_args(["--config", str(TINY), "--workdir", "w", "--data", value, "--images", value])
        cfg = load_config(TINY, train.overrides_from_flags(args, False))
        assert (cfg.data.train, cfg.data.images) == (value, value)
    write_yolo_dataset(tmp_path / "0123")
    shutil.rmtree(tmp_path / "0123" / "images" / "val")
    monkeypatch.chdir(tmp_path)
    code, out, err = program(capsys, "browse", "--config", TINY, "--data", "0123", "--out", "browse", "--num", "2")
    assert code == 0, err
    assert (tmp_path / "browse" / "grid_000.png").is_file()


def test_a_detection_box_at_1e308_is_refused_not_scored_with_overflow_warnings(capsys, tmp_path, shapes_dir):
    shutil.copy(shapes_dir / "instances_val.json", tmp_path / "gt.json")
    (tmp_path / "dt.json").write_text(json.dumps([{"image_id": 1, "category_id": 1, "bbox": [1, 1, 1e308, 5], "score": 0.9}]))
    result = program(capsys, "evaluate", "--gt", tmp_path / "gt.json", "--detections", tmp_path / "dt.json",
                     "--out", tmp_path / "m.json")
    assert_one_line(result, 1, f"{tmp_path / 'dt.json'}: result 0: bbox [1, 1, 1e+308, 5] point (1e+308, 6) lies far "
                               "outside the 64x64 image")
    assert not (tmp_path / "m.json").exists()


def test_an_annotation_id_used_twice_is_refused_not_scored_as_the_other_image(capsys, tmp_path, shapes_dir):
    """pycocotools indexes annotations by id: the second one replaced the first, so one image
    was scored against another image's box."""
    gt = json.loads((shapes_dir / "instances_val.json").read_text())
    first, second = gt["annotations"][0], next(a for a in gt["annotations"] if a["image_id"] != gt["annotations"][0]["image_id"])
    second["id"] = first["id"]
    (tmp_path / "gt.json").write_text(json.dumps(gt))
    (tmp_path / "dt.json").write_text("[]")
    names = {i["id"]: i["file_name"] for i in gt["images"]}
    result = program(capsys, "evaluate", "--gt", tmp_path / "gt.json", "--detections", tmp_path / "dt.json",
                     "--out", tmp_path / "m.json")
    assert_one_line(result, 1, f"{tmp_path / 'gt.json'}: annotation {first['id']} ({names[second['image_id']]}): annotation id "
                               f"{first['id']} is used twice (also in {names[first['image_id']]}); ids must be unique")
