"""YOLO txt, LabelMe, CVAT and any-layout VOC importers, the exporters, the split and the
image header reader: fixture files in each format, each tool's awkward cases, one-line errors."""

import base64
import json
import struct

import cv2
import numpy as np
import pytest
from pycocotools import mask as mask_utils

from detectlab.data.coco import load_coco
from detectlab.data.image_header import image_size
from detectlab.data.importers.cvat import load_cvat, read_cvat
from detectlab.data.importers.labelme import load_labelme, read_labelme
from detectlab.data.importers.voc import read_voc, write_voc
from detectlab.data.importers.yolo import label_file, load_yolo, read_yolo, write_yolo
from detectlab.data.records import read_image
from detectlab.data.split import split_coco
from detectlab.errors import DataError
from detectlab.registry import DATASET_FORMATS
from tests.data.test_importers import image, voc_object, voc_xml


def exif_jpeg(path, width, height, orientation):
    """A JPEG of ``width x height`` stored pixels with an EXIF orientation tag (APP1 after SOI)."""
    pixels = np.zeros((height, width, 3), np.uint8)
    pixels[: height // 2] = 255  # top half white, to see the rotation
    ok, encoded = cv2.imencode(".jpg", pixels)
    ifd = struct.pack("<H", 1) + struct.pack("<HHIHH", 0x0112, 3, 1, orientation, 0) + struct.pack("<I", 0)
    payload = b"Exif\x00\x00" + b"II*\x00" + struct.pack("<I", 8) + ifd
    app1 = b"\xff\xe1" + struct.pack(">H", len(payload) + 2) + payload
    data = encoded.tobytes()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data[:2] + app1 + data[2:])


# ---------------------------------------------------------------- image header / EXIF


def test_header_sizes_match_decoded_sizes_and_exif_orientation(tmp_path):
    image(tmp_path / "a.png", 41, 23)
    image(tmp_path / "b.jpg", 37, 19)
    image(tmp_path / "c.bmp", 13, 7)  # no header parser: decoded
    assert image_size(tmp_path / "a.png") == (41, 23)
    assert image_size(tmp_path / "b.jpg") == (37, 19)
    assert image_size(tmp_path / "c.bmp") == (13, 7)
    exif_jpeg(tmp_path / "rot.jpg", 40, 20, orientation=6)  # stored 40x20, shown 20x40
    exif_jpeg(tmp_path / "flip.jpg", 40, 20, orientation=2)
    assert image_size(tmp_path / "rot.jpg") == (20, 40)
    assert image_size(tmp_path / "flip.jpg") == (40, 20)
    decoded = cv2.imread(str(tmp_path / "rot.jpg"))  # OpenCV's default applies the orientation too
    assert decoded.shape[:2] == (40, 20)
    # the header is enough: a JPEG cut after its frame header still has a size (no decoding)
    whole = (tmp_path / "rot.jpg").read_bytes()
    (tmp_path / "cut.jpg").write_bytes(whole[: whole.index(b"\xff\xc4")])  # up to the Huffman tables
    assert cv2.imread(str(tmp_path / "cut.jpg")) is None and image_size(tmp_path / "cut.jpg") == (20, 40)
    (tmp_path / "bad.jpg").write_bytes(b"not an image")
    with pytest.raises(DataError, match=r"^here: cannot decode image \(corrupt or not an image\): .*bad\.jpg$"):
        image_size(tmp_path / "bad.jpg", "here")
    with pytest.raises(DataError, match=r"^.*none\.png: image not found: .*none\.png$"):
        image_size(tmp_path / "none.png")


def test_loader_applies_exif_orientation_and_checks_the_oriented_size(tmp_path):
    exif_jpeg(tmp_path / "rot.jpg", 40, 20, orientation=6)
    coco = {"images": [{"id": 1, "file_name": "rot.jpg", "width": 20, "height": 40}], "annotations": [],
            "categories": [{"id": 1, "name": "a"}]}
    (tmp_path / "d.json").write_text(json.dumps(coco))
    ds = load_coco(tmp_path / "d.json")
    rgb = read_image(ds[0])
    assert rgb.shape == (40, 20, 3)
    # rotated 90 degrees clockwise: the stored top half (white) is now the right half
    assert rgb[:, 15:].mean() > 200 and rgb[:, :5].mean() < 50
    coco["images"][0].update(width=40, height=20)  # the stored size: wrong under the rule
    (tmp_path / "d.json").write_text(json.dumps(coco))
    with pytest.raises(DataError, match=r"rot\.jpg: image is 20x40 but the annotations say 40x20$"):
        read_image(load_coco(tmp_path / "d.json")[0])


# ---------------------------------------------------------------- YOLO txt


def write_yolo_dataset(root, names="list"):
    """Ultralytics layout: images/{train,val} + labels/{train,val} + data.yaml.

    train: a.jpg (64x32: box of class 0, triangle segment of class 1), b.png (40x40: empty
    label file), c.jpg (20x10: no label file); val: d.jpg (32x32: box of class 1).
    """
    image(root / "images/train/a.jpg", 64, 32)
    image(root / "images/train/b.png", 40, 40)
    image(root / "images/train/c.jpg", 20, 10)
    image(root / "images/val/d.jpg", 32, 32)
    (root / "labels/train").mkdir(parents=True)
    (root / "labels/val").mkdir(parents=True)
    (root / "labels/train/a.txt").write_text("0 0.25 0.5 0.25 0.5\n\n1 0.5 0.25 0.75 0.25 0.75 0.75\n")
    (root / "labels/train/b.txt").write_text("")
    (root / "labels/val/d.txt").write_text("1 0.5 0.5 0.5 0.25\n")
    names_yaml = "names: [cat, dog]" if names == "list" else "names:\n  0: cat\n  1: dog"
    (root / "data.yaml").write_text(f"path: .\ntrain: images/train\nval: images/val\n{names_yaml}\n")
    return root / "data.yaml"


@pytest.mark.parametrize("names", ["list", "mapping"])
def test_yolo_boxes_segments_empty_and_missing_label_files(tmp_path, caplog, names):
    data_yaml = write_yolo_dataset(tmp_path, names)
    with caplog.at_level("WARNING", logger="detectlab"):
        data = read_yolo(data_yaml)
    assert [r.getMessage() for r in caplog.records] == [
        f"{data_yaml}: 1 of 3 images have no label file (kept as images without objects)"
    ]
    assert data["categories"] == [{"id": 1, "name": "cat"}, {"id": 2, "name": "dog"}]
    assert [(img["file_name"], img["width"], img["height"]) for img in data["images"]] == [
        (str(tmp_path / "images/train/a.jpg"), 64, 32),
        (str(tmp_path / "images/train/b.png"), 40, 40),
        (str(tmp_path / "images/train/c.jpg"), 20, 10),
    ]
    box, triangle = data["annotations"]
    assert box["bbox"] == [8, 8, 16, 16] and box["area"] == 256 and box["category_id"] == 1
    assert triangle["segmentation"] == [[32, 8, 48, 8, 48, 24]] and triangle["bbox"] == [32, 8, 16, 16]
    assert triangle["category_id"] == 2
    assert triangle["area"] == mask_utils.area(mask_utils.frPyObjects(triangle["segmentation"], 32, 64))[0]

    assert read_yolo(tmp_path) == data  # the folder holding data.yaml reads it
    val = load_yolo(data_yaml, split="val")
    np.testing.assert_allclose(val[0].boxes, [[12, 8, 20, 24]])
    np.testing.assert_array_equal(val[0].class_ids, [1])
    assert DATASET_FORMATS.get("yolo") is load_yolo


def test_yolo_folder_list_files_and_class_names(tmp_path, caplog):
    root = write_yolo_dataset(tmp_path).parent
    (root / "data.yaml").unlink()
    with caplog.at_level("WARNING", logger="detectlab"):
        data = read_yolo(root, split="train")
    assert [c["name"] for c in data["categories"]] == ["0", "1"]
    assert "no class names (data.yaml names, classes.txt or --classes): using 0, 1" in caplog.text
    (root / "classes.txt").write_text("cat\ndog\n")
    assert [c["name"] for c in read_yolo(root)["categories"]] == ["cat", "dog"]
    assert len(read_yolo(root)["images"]) == 4  # no split: every image
    # Darknet: a list file of image paths, labels next to the images
    image(tmp_path / "flat/x.jpg", 10, 10)
    (tmp_path / "flat/x.txt").write_text("0 0.5 0.5 1 1\n")
    (tmp_path / "train.txt").write_text("flat/x.jpg\n")
    (tmp_path / "d.yaml").write_text("train: train.txt\nnames: {0: thing}\n")
    assert label_file(tmp_path / "flat/x.jpg") == tmp_path / "flat/x.txt"
    assert read_yolo(tmp_path / "d.yaml")["annotations"][0]["bbox"] == [0, 0, 10, 10]


@pytest.mark.parametrize("line, reason", [
    ("0 0.5 0.5 0.2", "expected 'class cx cy w h' or 'class x1 y1 x2 y2 x3 y3 ...', got 4 values"),
    ("0 0.1 0.1 0.2 0.2 0.3 0.3 0.4", "expected 'class cx cy w h' or 'class x1 y1 x2 y2 x3 y3 ...', got 8 values"),
    ("2 0.5 0.5 0.2 0.2", "class '2' is not a valid class id (names has 0..1)"),
    ("cat 0.5 0.5 0.2 0.2", "class 'cat' is not a number"),
    ("0 0.5 0.5 x 0.2", "coordinate 'x' is not a number"),
    ("0 32 16 10 10", "coordinates must be normalised to 0..1, got 32 (pixels?)"),
    ("0 0.5 0.5 0 0.2", "box has w <= 0"),
])
def test_yolo_malformed_lines_name_file_and_line(tmp_path, line, reason):
    data_yaml = write_yolo_dataset(tmp_path)
    (tmp_path / "labels/train/a.txt").write_text(f"0 0.5 0.5 0.1 0.1\n{line}\n")
    with pytest.raises(DataError) as err:
        read_yolo(data_yaml)
    assert str(err.value) == f"{tmp_path / 'labels/train/a.txt'}:2: {reason}"


def test_yolo_yaml_errors(tmp_path):
    data_yaml = write_yolo_dataset(tmp_path)
    data_yaml.write_text("train: images/train\nval: images/val\nnames: {0: cat, 2: dog}\n")
    with pytest.raises(DataError, match=r"data\.yaml: names ids must be 0\.\.1 without gaps, got \[0, 2\]$"):
        read_yolo(data_yaml)
    data_yaml.write_text("train: images/train\nnames: [cat]\n")
    with pytest.raises(DataError, match=r"data\.yaml: no 'val' entry \(keys: train, names\)$"):
        read_yolo(data_yaml, "val")
    data_yaml.write_text("train: nowhere\nnames: [cat]\n")
    with pytest.raises(DataError, match=r"data\.yaml: train: .*nowhere is neither a folder nor a list file$"):
        read_yolo(data_yaml)


# ---------------------------------------------------------------- LabelMe


def labelme_doc(image_path, width, height, shapes, image_data=None):
    return {"version": "5.4.1", "flags": {}, "shapes": shapes, "imagePath": image_path,
            "imageData": image_data, "imageHeight": height, "imageWidth": width}


def shape(label, points, shape_type="polygon", group_id=None):
    return {"label": label, "points": points, "group_id": group_id, "description": "", "shape_type": shape_type, "flags": {}}


def write_labelme(root):
    """LabelMe folder: a.json (imagePath ../images/a.png, 60x40: rectangle drawn bottom-right
    to top-left, polygon, a line to skip, two polygons grouped as one instance), b.json
    (the image embedded as imageData only, 30x20, no shapes)."""
    image(root / "images/a.png", 60, 40)
    shapes = [
        shape("cat", [[30, 20], [10, 5]], "rectangle"),
        shape("dog", [[40, 10], [50, 10], [50, 30], [40, 30]]),
        shape("dog", [[0, 0], [5, 5]], "line"),
        shape("dog", [[1, 30], [5, 30], [5, 35]], group_id=1),
        shape("dog", [[10, 30], [14, 30], [14, 35]], group_id=1),
    ]
    (root / "json").mkdir(parents=True)
    (root / "json/a.json").write_text(json.dumps(labelme_doc("..\\images\\a.png", 60, 40, shapes)))
    ok, png = cv2.imencode(".png", np.full((20, 30, 3), 7, np.uint8))
    embedded = labelme_doc("b.png", 30, 20, [], base64.b64encode(png.tobytes()).decode())
    (root / "json/b.json").write_text(json.dumps(embedded))
    return root / "json"


def test_labelme_rectangles_polygons_groups_and_embedded_image(tmp_path, caplog):
    folder = write_labelme(tmp_path)
    with caplog.at_level("WARNING", logger="detectlab"):
        data = read_labelme(folder)
    assert f"{folder}: skipped shapes that are not regions: 1 line" in caplog.text
    assert data["categories"] == [{"id": 1, "name": "cat"}, {"id": 2, "name": "dog"}]
    assert data["images"] == [
        {"id": 1, "file_name": str(tmp_path / "images/a.png"), "width": 60, "height": 40},
        {"id": 2, "file_name": str(folder / "b.png"), "width": 30, "height": 20},
    ]
    assert cv2.imread(str(folder / "b.png")).shape == (20, 30, 3)  # written from imageData
    rect, poly, group = data["annotations"]
    assert rect["bbox"] == [10, 5, 20, 15] and rect["area"] == 300 and rect["segmentation"] == [[10, 5, 30, 5, 30, 20, 10, 20]]
    assert poly["bbox"] == [40, 10, 10, 20] and poly["category_id"] == 2
    assert len(group["segmentation"]) == 2 and group["bbox"] == [1, 30, 13, 5]
    ds = load_labelme(folder)
    assert [r.num_instances for r in ds] == [3, 0]
    assert ds.load_masks(0)[2].sum() == group["area"]


def test_labelme_errors(tmp_path):
    folder = write_labelme(tmp_path)
    doc = json.loads((folder / "a.json").read_text())
    doc["imageWidth"] = 61
    (folder / "a.json").write_text(json.dumps(doc))
    with pytest.raises(DataError) as err:
        read_labelme(folder)
    assert str(err.value) == (f"{folder / 'a.json'}: the annotation says 61x40 but the image "
                              f"{tmp_path / 'images/a.png'} is 60x40 (EXIF orientation applied)")
    doc["imageWidth"] = 60
    doc["shapes"][1]["points"] = [[1, 2], [3, 4]]
    (folder / "a.json").write_text(json.dumps(doc))
    with pytest.raises(DataError, match=r"a\.json: shape 1: polygon has 2 points \(needs at least 3\)$"):
        read_labelme(folder)
    (folder / "a.json").write_text('{"shapes": [}')
    with pytest.raises(DataError, match=r"a\.json: invalid JSON at line 1 column 13: Expecting value$"):
        read_labelme(folder)


# ---------------------------------------------------------------- CVAT


CVAT_XML = """<?xml version="1.0" encoding="utf-8"?>
<annotations>
  <version>1.1</version>
  <meta><task><name>t</name><labels>
    <label><name>person</name><color>#ff0000</color><type>any</type><attributes/></label>
    <label><name>car</name><color>#00ff00</color><type>any</type><attributes/></label>
    <label><name>tree</name><color>#0000ff</color><type>any</type><attributes/></label>
  </labels></task></meta>
  <image id="0" name="a.jpg" width="50" height="40">
    <box label="car" source="manual" occluded="1" xtl="5.5" ytl="4" xbr="25.5" ybr="14" z_order="0">
      <attribute name="color">red</attribute>
    </box>
    <polygon label="person" source="manual" occluded="0" points="30,10;45,10;45,30;30,30" z_order="0"/>
    <polygon label="person" source="manual" occluded="0" points="35,15;40,15;40,20;35,20" z_order="1"/>
    <polyline label="car" occluded="0" points="1,1;2,2" z_order="0"/>
  </image>
  <image id="1" name="sub/b.png" width="20" height="10"></image>
</annotations>
"""


def write_cvat(root, xml=CVAT_XML):
    image(root / "images/a.jpg", 50, 40)
    image(root / "images/sub/b.png", 20, 10)
    (root / "annotations.xml").write_text(xml)
    return root / "annotations.xml"


def test_cvat_boxes_polygons_holes_occluded_and_label_order(tmp_path, caplog):
    path = write_cvat(tmp_path)
    with caplog.at_level("WARNING", logger="detectlab"):
        data = read_cvat(path)
    assert f"{path}: skipped shapes that are not regions: 1 polyline" in caplog.text
    assert [c["name"] for c in data["categories"]] == ["person", "car", "tree"]  # the task's label order
    assert [img["file_name"] for img in data["images"]] == [str(tmp_path / "images/a.jpg"), str(tmp_path / "images/sub/b.png")]
    box, outer, hole = data["annotations"]
    assert box["bbox"] == [5.5, 4, 20, 10] and box["category_id"] == 2
    assert box["attributes"] == {"occluded": True, "color": "red"}
    assert outer["segmentation"] == [[30, 10, 45, 10, 45, 30, 30, 30]] and outer["attributes"] == {"occluded": False}
    assert hole["bbox"] == [35, 15, 5, 5]  # a hole is its own shape in CVAT, and its own instance
    ds = load_cvat(path)
    np.testing.assert_allclose(ds[0].boxes[0], [4, 5.5, 14, 25.5])
    assert DATASET_FORMATS.get("cvat") is load_cvat


def test_cvat_errors(tmp_path):
    path = write_cvat(tmp_path, CVAT_XML.replace('width="50"', 'width="51"'))
    with pytest.raises(DataError, match=r"image 0 \(a\.jpg\): the annotation says 51x40 but the image .*a\.jpg is 50x40"):
        read_cvat(path)
    path = write_cvat(tmp_path, CVAT_XML.replace('points="30,10;45,10;45,30;30,30"', 'points="30,10;45"'))
    with pytest.raises(DataError) as err:
        read_cvat(path)
    assert str(err.value) == f"{path}: image 0 (a.jpg): polygon 1: points must be 'x1,y1;x2,y2;...'"
    path = write_cvat(tmp_path, CVAT_XML.replace("</annotations>", ""))
    with pytest.raises(DataError, match=r"annotations\.xml: line 19 column 1: invalid XML \(no element found\)$"):
        read_cvat(path)


# ---------------------------------------------------------------- VOC in any layout


def write_flat_voc(root):
    """Flat images/ + annotations/ (no ImageSets); x2.xml's <filename> is stale."""
    for k in range(6):
        image(root / "images" / f"x{k}.jpg", 40, 30)
        name = "cat" if k % 2 else "dog"
        filename = "IMG_0001.JPG" if k == 2 else f"x{k}.jpg"
        (root / "annotations").mkdir(parents=True, exist_ok=True)
        (root / "annotations" / f"x{k}.xml").write_text(voc_xml(filename, 40, 30, [voc_object(name, (1, 2, 10, 12))]))
    return root


def test_voc_flat_and_explicit_folders(tmp_path):
    root = write_flat_voc(tmp_path / "set")
    data = read_voc(root)
    assert len(data["images"]) == 6 and data["images"][2]["file_name"] == str(root / "images/x2.jpg")
    assert data == read_voc(None, annotations_dir=root / "annotations", images_dir=root / "images")
    with pytest.raises(DataError) as err:
        read_voc(tmp_path)
    assert str(err.value) == f"{tmp_path}: no VOC annotations (no Annotations/ or annotations/ folder, no .xml files)"


# ---------------------------------------------------------------- exports and round trips


def coco_fixture(tmp_path):
    """COCO with boxes at fractional pixels, polygon masks (one of two parts), a crowd-free
    empty image; written as all.json next to its images."""
    image(tmp_path / "p.jpg", 80, 60)
    image(tmp_path / "q.png", 50, 70)
    image(tmp_path / "r.png", 30, 30)
    anns = [
        {"id": 1, "image_id": 1, "category_id": 3, "bbox": [10.25, 5.5, 30.5, 20.25], "area": 0, "iscrowd": 0,
         "segmentation": [[10.25, 5.5, 40.75, 5.5, 40.75, 25.75, 25.0, 25.75, 10.25, 15.0]]},
        {"id": 2, "image_id": 1, "category_id": 7, "bbox": [50, 30, 20, 25], "area": 0, "iscrowd": 0,
         "segmentation": [[50, 30, 60, 30, 60, 55, 50, 55], [62, 30, 70, 30, 70, 40]]},
        {"id": 3, "image_id": 2, "category_id": 7, "bbox": [3.4, 7.6, 40.2, 50.1], "area": 0, "iscrowd": 0},
    ]
    data = {"images": [{"id": 1, "file_name": "p.jpg", "width": 80, "height": 60},
                       {"id": 2, "file_name": "q.png", "width": 50, "height": 70},
                       {"id": 3, "file_name": "r.png", "width": 30, "height": 30}],
            "annotations": anns, "categories": [{"id": 3, "name": "cat"}, {"id": 7, "name": "dog"}]}
    (tmp_path / "all.json").write_text(json.dumps(data))
    return tmp_path / "all.json"


def mask_iou(a, b):
    return float(np.logical_and(a, b).sum() / np.logical_or(a, b).sum())


def test_coco_to_yolo_to_coco_keeps_boxes_and_masks(tmp_path):
    original = load_coco(coco_fixture(tmp_path))
    data_yaml = write_yolo(original, tmp_path / "yolo", "train")
    assert (tmp_path / "yolo/images/train/p.jpg").resolve() == (tmp_path / "p.jpg")
    assert (tmp_path / "yolo/labels/train/r.txt").read_text() == ""
    back = load_yolo(data_yaml, split="train")
    assert back.class_names == ["cat", "dog"] and len(back) == 3
    for a, b in zip(original, back):
        np.testing.assert_array_equal(a.class_ids, b.class_ids)
        assert a.boxes.shape == b.boxes.shape and np.all(np.abs(a.boxes - b.boxes) <= 0.5)
    masks_a, masks_b = original.load_masks(0), back.load_masks(0)
    ious = [mask_iou(m, n) for m, n in zip(masks_a, masks_b)]
    assert len(ious) == 2 and min(ious) >= 0.98, ious  # the two-part mask went through one bridged outline


def test_coco_to_voc_to_coco_keeps_boxes(tmp_path):
    original = load_coco(coco_fixture(tmp_path))
    out = write_voc(original, tmp_path / "voc", "train")
    assert (tmp_path / "voc/ImageSets/Main/train.txt").read_text() == "p\nq\nr\n"
    back = load_coco(read_voc(tmp_path / "voc", "train"), source="back")  # images found from <path>
    assert out == tmp_path / "voc/Annotations" and back.class_names == ["cat", "dog"]
    for a, b in zip(original, back):
        np.testing.assert_array_equal(a.class_ids, b.class_ids)
        assert a.boxes.shape == b.boxes.shape and np.all(np.abs(a.boxes - b.boxes) <= 0.5)


def test_split_is_stratified_disjoint_and_seeded(tmp_path):
    images = [{"id": k, "file_name": f"{k}.jpg", "width": 10, "height": 10} for k in range(1, 21)]
    # class 1 on every image, class 2 (rare) on images 1..4, images 17..20 empty
    anns = [{"id": k, "image_id": k, "category_id": 1, "bbox": [0, 0, 5, 5]} for k in range(1, 17)]
    anns += [{"id": 100 + k, "image_id": k, "category_id": 2, "bbox": [0, 0, 5, 5]} for k in range(1, 5)]
    data = {"images": images, "annotations": anns, "categories": [{"id": 1, "name": "a"}, {"id": 2, "name": "b"}]}
    train, val = split_coco(data, 0.25, seed=0)
    val_ids = {img["id"] for img in val["images"]}
    assert len(val_ids) == 5 and not val_ids & {img["id"] for img in train["images"]}
    assert len(val_ids & {1, 2, 3, 4}) == 1 and len(val_ids & {17, 18, 19, 20}) == 1  # each stratum split 1:3
    assert {a["image_id"] for a in val["annotations"]} <= val_ids and val["categories"] == data["categories"]
    assert split_coco(data, 0.25, seed=0) == (train, val) and split_coco(data, 0.25, seed=1) != (train, val)
    with pytest.raises(DataError, match=r"^val ratio must be between 0 and 1, got 1\.5$"):
        split_coco(data, 1.5)


def test_detect_format_of_each_input(tmp_path):
    from detectlab.data.loading import detect_format

    assert detect_format(write_yolo_dataset(tmp_path / "y")) == "yolo"
    assert detect_format(tmp_path / "y") == "yolo"  # images/ + labels/
    assert detect_format(write_labelme(tmp_path / "lm")) == "labelme"
    assert detect_format(tmp_path / "lm/json/a.json") == "labelme"
    assert detect_format(write_cvat(tmp_path / "c")) == "cvat"
    assert detect_format(write_flat_voc(tmp_path / "v")) == "voc"
    assert detect_format(coco_fixture(tmp_path)) == "coco"
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match=r"empty: a folder, but not VOC \(Annotations/\), YOLO \(labels/\) or LabelMe \(\*\.json\)$"):
        detect_format(tmp_path / "empty")
