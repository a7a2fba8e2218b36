"""Pascal VOC, simple CSV and VIA importers: exact coordinates, flags, masks, one-line errors."""

import json

import cv2
import numpy as np
import pytest
from pycocotools import mask as mask_utils

from detectlab.data.importers.csv_simple import load_csv, read_csv
from detectlab.data.importers.via import load_via, read_via
from detectlab.data.importers.voc import load_voc, read_voc
from detectlab.errors import DataError
from detectlab.registry import DATASET_FORMATS


def image(path, width, height):
    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), np.full((height, width, 3), 90, np.uint8))


def voc_object(name, box, difficult=None):
    flag = "" if difficult is None else f"<difficult>{difficult}</difficult>"
    corners = "".join(f"<{k}>{v}</{k}>" for k, v in zip(("xmin", "ymin", "xmax", "ymax"), box))
    return f"<object><name>{name}</name><pose>Left</pose>{flag}<bndbox>{corners}</bndbox></object>"


def voc_xml(filename, width, height, objects):
    return (
        f"<annotation>\n  <folder>VOC2007</folder>\n  <filename>{filename}</filename>\n"
        f"  <size><width>{width}</width><height>{height}</height><depth>3</depth></size>\n"
        + "\n".join(objects) + "\n</annotation>\n"
    )


def write_voc(tmp_path):
    """VOC2007/ with 000001 (40x30: dog, difficult cat), 000002 (50x20: dog), 000003 (not in the split)."""
    root = tmp_path / "VOC2007"
    (root / "Annotations").mkdir(parents=True)
    (root / "ImageSets" / "Main").mkdir(parents=True)
    image(root / "JPEGImages" / "000001.jpg", 40, 30)
    image(root / "JPEGImages" / "000002.jpg", 50, 20)
    image(root / "JPEGImages" / "000003.jpg", 50, 20)
    xml = {
        "000001": voc_xml("000001.jpg", 40, 30, [voc_object("dog", (1, 2, 10, 12), 0), voc_object("cat", (5, 6, 20, 25), 1)]),
        "000002": voc_xml("000002.jpg", 50, 20, [voc_object("dog", (11, 3, 50, 20))]),
        "000003": voc_xml("000003.jpg", 50, 20, []),
    }
    for stem, text in xml.items():
        (root / "Annotations" / f"{stem}.xml").write_text(text)
    (root / "ImageSets" / "Main" / "trainval.txt").write_text("000002\n000001\n")
    return root


def test_voc_coordinates_difficult_and_split(tmp_path):
    root = write_voc(tmp_path)
    data = read_voc(root, "trainval")
    assert data["categories"] == [{"id": 1, "name": "cat"}, {"id": 2, "name": "dog"}]
    assert data["images"] == [  # split order, absolute paths
        {"id": 1, "file_name": str(root / "JPEGImages" / "000002.jpg"), "width": 50, "height": 20},
        {"id": 2, "file_name": str(root / "JPEGImages" / "000001.jpg"), "width": 40, "height": 30},
    ]
    # VOC 1-based inclusive corners -> COCO [x, y, w, h]: xmin 11 -> x 10, width 50 - 11 + 1 = 40
    expected = [
        (1, 2, [10, 2, 40, 18], 720, 0),
        (2, 2, [0, 1, 10, 11], 110, 0),
        (2, 1, [4, 5, 16, 20], 320, 1),
    ]
    got = [(a["image_id"], a["category_id"], a["bbox"], a["area"], a["difficult"]) for a in data["annotations"]]
    assert got == expected
    assert [a["id"] for a in data["annotations"]] == [1, 2, 3] and all(a["iscrowd"] == 0 for a in data["annotations"])

    ds = load_voc(root, split="trainval", classes=["dog", "cat"])
    assert ds.class_names == ["dog", "cat"] and len(ds) == 2
    r = ds.records[1]  # 000001
    np.testing.assert_array_equal(r.boxes, [[1, 0, 12, 10], [5, 4, 25, 20]])  # y1 x1 y2 x2
    np.testing.assert_array_equal(r.class_ids, [0, 1])
    np.testing.assert_array_equal(r.difficult, [False, True])
    np.testing.assert_array_equal(ds.records[0].difficult, [False])
    assert ds.load_image(1).shape == (30, 40, 3)
    assert len(read_voc(root)["images"]) == 3  # no split: every XML, sorted
    assert len(load_voc(root, include_empty_images=False)) == 2


def test_voc_size_falls_back_to_the_image(tmp_path):
    root = write_voc(tmp_path)
    (root / "Annotations" / "000003.xml").write_text("<annotation><size><width>0</width></size></annotation>")
    data = read_voc(root)
    assert data["images"][2] == {"id": 3, "file_name": str(root / "JPEGImages" / "000003.jpg"), "width": 50, "height": 20}


def test_voc_malformed_xml_is_one_line_with_file_and_line(tmp_path):
    root = write_voc(tmp_path)
    bad = root / "Annotations" / "000001.xml"
    bad.write_text("<annotation>\n  <filename>000001.jpg</filename>\n  <size>\n</annotation>\n")
    with pytest.raises(DataError) as err:
        read_voc(root, "trainval")
    assert str(err.value) == f"{bad}: line 4 column 3: invalid XML (mismatched tag)"


@pytest.mark.parametrize(
    "objects, message",
    [
        ([voc_object("dog", (1, 2, 10, 12)), "<object><name>cat</name><bndbox><ymin>1</ymin></bndbox></object>"],
         "object 2: missing bndbox/xmin"),
        ([voc_object("dog", (1, 2, 10, "abc"))], "object 1: bndbox/ymax 'abc' is not a number"),
        (["<object><bndbox/></object>"], "object 1: missing name"),
    ],
)
def test_voc_bad_objects(tmp_path, objects, message):
    root = write_voc(tmp_path)
    bad = root / "Annotations" / "000002.xml"
    bad.write_text(voc_xml("000002.jpg", 50, 20, objects))
    with pytest.raises(DataError) as err:
        read_voc(root, "trainval")
    assert str(err.value) == f"{bad}: {message}"


def test_voc_split_errors(tmp_path):
    root = write_voc(tmp_path)
    with pytest.raises(DataError) as err:
        read_voc(root, "test")
    assert str(err.value) == f"{root / 'ImageSets' / 'Main' / 'test.txt'}: split file not found (without split files, split with --val-ratio)"
    split = root / "ImageSets" / "Main" / "val.txt"
    split.write_text("000001\n\n000009\n")
    with pytest.raises(DataError) as err:
        read_voc(root, "val")
    assert str(err.value) == f"{split}:3: image '000009' has no annotation file {root / 'Annotations' / '000009.xml'}"
    with pytest.raises(DataError, match=r"class 'cat' is not in classes \(dog\)"):
        read_voc(root, "trainval", classes=["dog"])


def write_csv(tmp_path, text):
    image(tmp_path / "imgs" / "a.png", 40, 30)
    image(tmp_path / "imgs" / "b.png", 50, 20)
    path = tmp_path / "ann.csv"
    path.write_text(text)
    return path


CSV = "# path,x1,y1,x2,y2,class_name\nimgs/a.png,1,2,11,12,dog\n\nimgs/b.png,,,,,\nimgs/a.png,5,6,20.5,25,cat\n"


def test_csv_rows_empty_images_and_relative_paths(tmp_path):
    path = write_csv(tmp_path, CSV)
    data = read_csv(path)
    assert data["images"] == [
        {"id": 1, "file_name": str(tmp_path / "imgs" / "a.png"), "width": 40, "height": 30},
        {"id": 2, "file_name": str(tmp_path / "imgs" / "b.png"), "width": 50, "height": 20},
    ]
    assert data["categories"] == [{"id": 1, "name": "cat"}, {"id": 2, "name": "dog"}]
    got = [(a["image_id"], a["category_id"], a["bbox"], a["area"]) for a in data["annotations"]]
    assert got == [(1, 2, [1, 2, 10, 10], 100), (1, 1, [5, 6, 15.5, 19], 294.5)]  # x2, y2 exclusive

    ds = load_csv(path, classes="dog,cat")
    assert ds.class_names == ["dog", "cat"] and len(ds) == 2
    np.testing.assert_allclose(ds[0].boxes, [[2, 1, 12, 11], [6, 5, 25, 20.5]])
    np.testing.assert_array_equal(ds[0].class_ids, [0, 1])
    assert ds[1].num_instances == 0
    assert len(load_csv(path, include_empty_images=False)) == 1


@pytest.mark.parametrize(
    "line, message",
    [
        ("imgs/a.png,1,2,11", "expected path,x1,y1,x2,y2,class_name (6 fields), got 4"),
        ("imgs/a.png,abc,2,11,12,dog", "x1 'abc' is not a number"),
        ("imgs/a.png,5,2,5,12,dog", "box has x2 <= x1"),
        ("imgs/a.png,1,12,11,2,dog", "box has y2 <= y1"),
        ("imgs/a.png,1,2,11,12,", "empty class_name"),
    ],
)
def test_csv_bad_lines_name_file_and_line(tmp_path, line, message):
    path = write_csv(tmp_path, f"# header\nimgs/b.png,1,1,4,4,cat\n{line}\nimgs/a.png,1,2,3,4,dog\n")
    with pytest.raises(DataError) as err:
        read_csv(path)
    assert str(err.value) == f"{path}:3: {message}"


def test_csv_missing_and_corrupt_images(tmp_path):
    path = write_csv(tmp_path, "imgs/a.png,1,2,11,12,dog\nimgs/none.png,1,2,11,12,dog\n")
    with pytest.raises(DataError) as err:
        read_csv(path)
    assert str(err.value) == f"{path}:2: image not found: {tmp_path / 'imgs' / 'none.png'}"
    (tmp_path / "imgs" / "none.png").write_bytes(b"not an image")
    with pytest.raises(DataError, match=r"ann\.csv:2: cannot decode image \(corrupt or not an image\): .*none\.png$"):
        read_csv(path)


SQUARE = {"name": "polygon", "all_points_x": [10, 30, 30, 10], "all_points_y": [5, 5, 15, 15]}
REGIONS = [
    {"shape_attributes": SQUARE, "region_attributes": {"name": "balloon"}},
    {"shape_attributes": {"name": "rect", "x": 2, "y": 3, "width": 4, "height": 5}, "region_attributes": {}},
    {"shape_attributes": {"name": "circle", "cx": 20, "cy": 20, "r": 5}, "region_attributes": {"kind": "balloon"}},
]


def write_via(tmp_path, regions_a, regions_b=()):
    image(tmp_path / "a.png", 40, 30)
    image(tmp_path / "b.png", 50, 20)
    data = {
        "a.png1234": {"filename": "a.png", "size": 1234, "regions": regions_a, "file_attributes": {}},
        "b.png99": {"filename": "b.png", "size": 99, "regions": regions_b, "file_attributes": {}},
    }
    path = tmp_path / "via_region_data.json"
    path.write_text(json.dumps(data))
    return path


def test_via_list_and_dict_regions_give_polygons_and_masks(tmp_path):
    listed = read_via(write_via(tmp_path, REGIONS))
    keyed = read_via(write_via(tmp_path, {str(k): r for k, r in enumerate(REGIONS)}))
    assert listed == keyed
    assert listed["categories"] == [{"id": 1, "name": "balloon"}, {"id": 2, "name": "object"}]
    assert [img["file_name"] for img in listed["images"]] == [str(tmp_path / "a.png"), str(tmp_path / "b.png")]
    square, rect, circle = listed["annotations"]
    assert square["segmentation"] == [[10, 5, 30, 5, 30, 15, 10, 15]]
    assert square["bbox"] == [10, 5, 20, 10] and square["area"] == 200 and square["category_id"] == 1
    assert rect["segmentation"] == [[2, 3, 6, 3, 6, 8, 2, 8]] and rect["bbox"] == [2, 3, 4, 5] and rect["category_id"] == 2
    assert circle["bbox"] == [15, 15, 10, 10] and circle["category_id"] == 1
    # COCO's area: the pixels pycocotools rasterises, not the 32-gon's shoelace area (78.04)
    assert circle["area"] == 80.0 == mask_utils.area(mask_utils.frPyObjects(circle["segmentation"], 30, 40))[0]

    ds = load_via(tmp_path / "via_region_data.json", classes=["object", "balloon"])
    assert ds.class_names == ["object", "balloon"] and len(ds) == 2 and ds[1].num_instances == 0
    np.testing.assert_array_equal(ds[0].class_ids, [1, 0, 1])
    masks = ds.load_masks(0)
    assert masks.shape == (3, 30, 40)
    assert masks[0].sum() == 200 and masks[1].sum() == 20
    assert abs(int(masks[2].sum()) - np.pi * 25) <= 12  # rasterised circle of radius 5


def test_via_class_attribute_and_default_class(tmp_path, caplog):
    regions = [{"shape_attributes": SQUARE, "region_attributes": {"note": "big", "type": "balloon"}}]
    path = write_via(tmp_path, regions, [{"shape_attributes": SQUARE, "region_attributes": {}}])
    with caplog.at_level("WARNING", logger="detectlab"):
        assert [c["name"] for c in read_via(path)["categories"]] == ["big", "object"]
    assert [r.getMessage() for r in caplog.records] == [
        f"{path}: 1 regions without a class became 'object' (pass --default-class NAME to choose)"
    ]
    data = read_via(path, class_attribute="type", default_class="thing")
    assert [c["name"] for c in data["categories"]] == ["balloon", "thing"]
    with pytest.raises(DataError) as err:
        read_via(path, class_attribute="kind")
    assert str(err.value) == f"{path}: a.png1234 region 0: region attribute 'kind' is missing or not a non-empty string"
    regions[0]["region_attributes"] = {"flags": {"a": True}}
    path = write_via(tmp_path, regions)
    with pytest.raises(DataError, match=r"a\.png1234 region 0: no region attribute holds a class name \(attributes: flags; pass class_attribute\)$"):
        read_via(path)


@pytest.mark.parametrize(
    "shape, message",
    [
        ({"name": "polygon", "all_points_x": [1, 5, 5]}, "polygon without 'all_points_y'"),
        ({"name": "polygon", "all_points_x": [1, 5, 5], "all_points_y": [1, 2]}, "polygon all_points_x and all_points_y differ in length"),
        ({"name": "polygon", "all_points_x": [1, 5], "all_points_y": [1, 2]}, "polygon has 2 points (needs at least 3)"),
        ({"name": "rect", "x": 1, "y": "top", "width": 4, "height": 5}, "rect 'y' must be numeric"),
        ({"name": "point", "cx": 1, "cy": 2}, "unsupported shape 'point' (expected one of: polygon, rect, circle, ellipse)"),
    ],
)
def test_via_bad_regions_name_file_image_and_region(tmp_path, shape, message):
    regions = {"0": REGIONS[0], "1": {"shape_attributes": shape, "region_attributes": {}}}
    path = write_via(tmp_path, regions)
    with pytest.raises(DataError) as err:
        read_via(path)
    assert str(err.value) == f"{path}: a.png1234 region 1: {message}"


def test_via_file_errors(tmp_path):
    path = write_via(tmp_path, REGIONS)
    (tmp_path / "b.png").unlink()
    with pytest.raises(DataError) as err:
        read_via(path)
    assert str(err.value) == f"{path}: b.png99: image not found: {tmp_path / 'b.png'}"
    path.write_text('{"a.png1": {"filename": "a.png", "regions": [}')
    with pytest.raises(DataError, match=r"via_region_data\.json: invalid JSON at line 1 column 46"):
        read_via(path)
    path.write_text(json.dumps({"_via_settings": {}, "_via_img_metadata": {"a.png1": {"filename": "a.png", "regions": []}}}))
    assert len(read_via(path)["images"]) == 1  # a VIA 2 project file


def test_formats_are_registered():
    assert DATASET_FORMATS.get("voc") is load_voc
    assert DATASET_FORMATS.get("csv") is load_csv
    assert DATASET_FORMATS.get("via") is load_via
    assert {"coco", "voc", "csv", "via"} <= set(DATASET_FORMATS.names())
