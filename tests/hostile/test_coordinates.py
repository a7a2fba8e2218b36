"""Unbounded coordinates never reach pycocotools: every importer, ``train --data`` and
``evaluate --gt`` check each point (finite, within one image side of the image) before
anything is rasterised, and masks stored as RLE (``--gt`` and ``--detections``) must have run
lengths that add up to their image. The hostile cases run in one subprocess limited to 4 GB of address
space (they used to segfault or grow to 24 GB); shapes within the margin are clipped."""

from __future__ import annotations

import json

import numpy as np
import pytest
from pycocotools import mask as mask_utils

from tests.conftest import INSTANT
from tests.hostile.common import assert_one_line, cvat_xml, jpeg, labelme, program, run_cases, shape

FAR = "lies far outside the 64x48 image (more than 1 image width/height away)"
NON_FINITE = "has a NaN or infinite value"
RUNS = "RLE compressed counts must be whole run lengths >= 0 adding up to the image's 3072 pixels"


def _labelme(root, tag, points, kind="polygon", raw=None):
    folder = root / f"labelme_{tag}"
    jpeg(folder / "a.jpg")
    path = labelme(folder, [shape(points, kind=kind)])
    if raw is not None:  # numbers Python's json cannot write (1e400)
        path.write_text(path.read_text().replace(raw[0], raw[1]))
    return ["--from", "labelme", "--input", folder, "--out", folder / "out.json"], f"{path}: shape 0: "


def _cvat(root, tag, body):
    path = cvat_xml(root / f"cvat_{tag}" / "a.xml", f'<image id="0" name="a.jpg" width="64" height="48">{body}</image>')
    jpeg(path.parent / "a.jpg")
    return ["--from", "cvat", "--input", path, "--out", path.parent / "out.json"], f"{path}: image 0 (a.jpg): "


def _via(root, tag, attributes):
    folder = root / f"via_{tag}"
    jpeg(folder / "a.jpg")
    (folder / "via.json").write_text(json.dumps({"a.jpg1": {"filename": "a.jpg", "regions": [
        {"shape_attributes": attributes, "region_attributes": {"class": "cat"}}]}}))
    return ["--from", "via", "--input", folder / "via.json", "--out", folder / "out.json"], f"{folder / 'via.json'}: a.jpg1 region 0: "


def _coco(root, tag, segmentation=None, bbox=(2, 2, 10, 10)):
    folder = root / f"coco_{tag}"
    jpeg(folder / "a.jpg")
    ann = {"id": 7, "image_id": 1, "category_id": 1, "bbox": list(bbox), "area": 100, "iscrowd": 0}
    if segmentation is not None:
        ann["segmentation"] = segmentation
    data = {"images": [{"id": 1, "file_name": "a.jpg", "width": 64, "height": 48}], "annotations": [ann],
            "categories": [{"id": 1, "name": "cat"}]}
    (folder / "gt.json").write_text(json.dumps(data))
    (folder / "dt.json").write_text(json.dumps([{"image_id": 1, "category_id": 1, "score": 0.9, "segmentation": RLE}]))
    return folder, f"{folder / 'gt.json'}: annotation 7 (a.jpg): "


def _rle(runs) -> dict:
    """pycocotools' compressed RLE of run lengths ``runs`` in a 64x48 image (need not add up)."""
    rle = mask_utils.frPyObjects({"size": [48, 64], "counts": list(runs)}, 48, 64)
    return {"size": [48, 64], "counts": rle["counts"].decode()}


RLE = _rle([100, 50, 3072 - 150])  # a real mask of the image's size: asks for segm evaluation


def _evaluate_rle(tag, gt_runs, dt_runs):
    """``evaluate --gt --detections`` with compressed RLE masks of the given run lengths (a run
    of 1e9 in a 3072-pixel mask: pycocotools decodes without bounds; evaluate ran for hours);
    the error names the side whose runs do not add up to the image."""
    def make(root):
        folder, gt_where = _coco(root, tag, _rle(gt_runs))
        (folder / "dt.json").write_text(json.dumps([{"image_id": 1, "category_id": 1, "score": 0.9, "bbox": [0, 0, 9, 9],
                                                     "segmentation": _rle(dt_runs)}]))
        argv = ["--gt", folder / "gt.json", "--detections", folder / "dt.json", "--out", folder / "m.json"]
        where = gt_where + "segmentation " if sum(gt_runs) != 3072 else f"{folder / 'dt.json'}: result 0: 'segmentation' "
        return {"command": "evaluate", "argv": list(map(str, argv))}, where + RUNS
    return make


def _convert(build, code_message):
    def make(root):
        (argv, where) = build(root)
        return {"command": "convert", "argv": list(map(str, argv))}, where + code_message
    return make


def _evaluate_gt(tag, segmentation, message, bbox=(2, 2, 10, 10)):
    def make(root):
        folder, where = _coco(root, tag, segmentation, bbox)
        argv = ["--gt", folder / "gt.json", "--detections", folder / "dt.json", "--out", folder / "m.json"]
        return {"command": "evaluate", "argv": list(map(str, argv))}, where + message
    return make


def _train_coco(root):
    folder, where = _coco(root, "train", [[1, 1, 1e8, 1, 20, 1e8]])
    argv = ["--config", INSTANT / "yolov3_tiny_instant.yaml", "--workdir", folder / "run", "--data", folder / "gt.json",
            "--val", "none", "--epochs", "1"]
    return {"command": "train", "argv": list(map(str, argv))}, where + "segmentation polygon 0 point (1e+08, 1) " + FAR


# case id -> make(root) -> (driver case, the error line's text after "error: "); every case exits 1
CASES = {
    "labelme-polygon-1e8": _convert(lambda r: _labelme(r, "1e8", [[1, 1], [1e8, 1], [20, 1e8]]), "polygon point (1e+08, 1) " + FAR),
    "labelme-polygon-1e400": _convert(lambda r: _labelme(r, "1e400", [[1, 1], [30, 1], [20, 20]], raw=("30, 1]", "1e400, 1]")),
                                      "polygon " + NON_FINITE),
    "labelme-polygon-nan": _convert(lambda r: _labelme(r, "nan", [[1, 1], [30, 1], [20, 20]], raw=("30, 1]", "NaN, 1]")),
                                    "polygon " + NON_FINITE),
    "labelme-circle-1e9": _convert(lambda r: _labelme(r, "c9", [[10, 10], [1e9, 10]], "circle"), "circle point (1e+09, 10) " + FAR),
    "labelme-circle-1e300": _convert(lambda r: _labelme(r, "c300", [[10, 10], [10, 1e300]], "circle"),
                                     "circle point (1e+300, 10) " + FAR),
    "cvat-polygon-1e8": _convert(lambda r: _cvat(r, "p", '<polygon label="cat" points="1,1;1e8,1;20,1e8"/>'),
                                 "polygon 0: polygon point (1e+08, 1) " + FAR),
    "cvat-ellipse-1e300": _convert(lambda r: _cvat(r, "e", '<ellipse label="cat" cx="10" cy="10" rx="1e300" ry="1e300"/>'),
                                   "ellipse 0: ellipse point (1e+300, 10) " + FAR),
    "cvat-ellipse-1e9": _convert(lambda r: _cvat(r, "e9", '<ellipse label="cat" cx="10" cy="10" rx="3" ry="1e9"/>'),
                                 "ellipse 0: ellipse point "),
    "cvat-rotated-box-1e8": _convert(lambda r: _cvat(r, "r", '<box label="cat" xtl="1" ytl="1" xbr="1e8" ybr="9" rotation="30"/>'),
                                     "box 0: rotated box point "),
    "via-polygon-1e8": _convert(lambda r: _via(r, "p", {"name": "polygon", "all_points_x": [1, 1e8, 20], "all_points_y": [1, 1, 1e8]}),
                                "polygon point (1e+08, 1) " + FAR),
    "via-circle-1e300": _convert(lambda r: _via(r, "c", {"name": "circle", "cx": 5, "cy": 5, "r": 1e300}),
                                 "circle point (1e+300, 5) " + FAR),
    "via-ellipse-1e9": _convert(lambda r: _via(r, "e", {"name": "ellipse", "cx": 5, "cy": 5, "rx": 1e9, "ry": 2, "theta": 0.3}),
                                "ellipse point "),
    "evaluate-gt-polygon-1e8": _evaluate_gt("p8", [[1, 1, 1e8, 1, 20, 1e8]], "segmentation polygon 0 point (1e+08, 1) " + FAR),
    "evaluate-gt-polygon-1e308": _evaluate_gt("p308", [[1, 1, 1e308, 1, 20, 20]], "segmentation polygon 0 point (1e+308, 1) " + FAR),
    "evaluate-gt-polygon-nan": _evaluate_gt("pnan", [[1, 1, float("nan"), 1, 20, 20]], "segmentation polygon 0 " + NON_FINITE),
    "evaluate-gt-bbox-1e8": _evaluate_gt("b8", None, "bbox [2, 2, 100000000.0, 10] " + FAR, bbox=(2, 2, 1e8, 10)),
    "train-coco-polygon-1e8": _train_coco,
    "evaluate-gt-rle-1e9": _evaluate_rle("rg", [0, 10 ** 9, 5], [100, 50, 3072 - 150]),
    "evaluate-detections-rle-1e9": _evaluate_rle("rd", [100, 50, 3072 - 150], [0, 10 ** 9, 5]),
}


@pytest.fixture(scope="module")
def reports(tmp_path_factory):
    """Every case in one driver subprocess (4 GB address space): ``{id: (report, expected line)}``."""
    root = tmp_path_factory.mktemp("coordinates")
    cases, expected = [], {}
    for case_id, make in CASES.items():
        case, line = make(root / "data")
        cases.append({**case, "id": case_id, "cwd": str(root), "allowed": [str(root)]})
        expected[case_id] = line
    found = run_cases(root, cases)
    return {case_id: (found[case_id], expected[case_id]) for case_id in CASES}


@pytest.mark.parametrize("case_id", list(CASES))
def test_unbounded_coordinates_are_one_line_naming_the_file_and_shape(reports, case_id):
    report, line = reports[case_id]
    assert report["traceback"] is None, report["traceback"]
    assert_one_line(report, 1, line)
    assert not report["outside_writes"] and not report["changed_inputs"], report


# ------------------------------------------------------------------- within the margin: clipped


def test_shapes_partly_outside_are_clipped_to_the_image(capsys, tmp_path):
    folder = tmp_path / "labelme"
    jpeg(folder / "a.jpg")
    labelme(folder, [shape([[-10, 5], [80, 5], [80, 20], [-10, 20]]), shape([[60, 24], [70, 24]], kind="circle"),
                     shape([[-5, 30], [70, 60]], kind="rectangle")])
    code, _, err = program(capsys, "convert", "--from", "labelme", "--input", folder, "--out", tmp_path / "out.json")
    assert code == 0, err
    polygon, circle, rectangle = json.loads((tmp_path / "out.json").read_text())["annotations"]
    assert polygon["bbox"] == [0, 5, 64, 15] and abs(polygon["area"] - 64 * 15) <= 64
    for ann in (polygon, circle, rectangle):
        points = np.concatenate([np.reshape(p, (-1, 2)) for p in ann["segmentation"]])
        assert (points >= 0).all() and (points <= [64, 48]).all(), ann
        x, y, w, h = ann["bbox"]
        assert x >= 0 and y >= 0 and x + w <= 64 and y + h <= 48
    assert circle["bbox"][0] == 50 and circle["bbox"][2] == 14  # the part of the circle inside
    assert rectangle["bbox"] == [0, 30, 64, 18]


def test_a_voc_box_past_the_edge_is_clipped_and_its_area_is_the_clipped_one(capsys, tmp_path):
    jpeg(tmp_path / "voc" / "JPEGImages" / "a.jpg")
    (tmp_path / "voc" / "Annotations").mkdir()
    (tmp_path / "voc" / "Annotations" / "a.xml").write_text(
        "<annotation><filename>a.jpg</filename><object><name>cat</name><bndbox><xmin>1</xmin><ymin>11</ymin>"
        "<xmax>67</xmax><ymax>20</ymax></bndbox></object></annotation>")
    code, _, err = program(capsys, "convert", "--from", "voc", "--input", tmp_path / "voc", "--out", tmp_path / "o.json")
    assert code == 0, err
    (ann,) = json.loads((tmp_path / "o.json").read_text())["annotations"]
    assert ann["bbox"] == [0, 10, 64, 10] and ann["area"] == 640
