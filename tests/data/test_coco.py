"""COCO loading: masks in every encoding, category mapping, and one-line errors."""

import json

import cv2
import numpy as np
import pytest
from pycocotools import mask as mask_utils

from detectlab.data.coco import load_coco
from detectlab.errors import DataError


def write_fixture(root, annotations=None, images=None, categories=None):
    """Two 40x30 images; categories with ids 7 and 3 (non-contiguous, unsorted)."""
    root.mkdir(parents=True, exist_ok=True)
    for name in ("a.png", "b.png"):
        cv2.imwrite(str(root / name), np.full((30, 40, 3), 90, np.uint8))
    square = np.zeros((30, 40), np.uint8)
    square[5:15, 10:30] = 1
    rle = mask_utils.encode(np.asfortranarray(square))
    rle["counts"] = rle["counts"].decode()
    uncompressed = {"size": [30, 40], "counts": _uncompressed_counts(square)}
    data = {
        "images": images or [
            {"id": 10, "file_name": "a.png", "width": 40, "height": 30},
            {"id": 11, "file_name": "b.png", "width": 40, "height": 30},
        ],
        "categories": categories or [{"id": 7, "name": "dog"}, {"id": 3, "name": "cat"}],
        "annotations": annotations if annotations is not None else [
            {"id": 1, "image_id": 10, "category_id": 7, "bbox": [10, 5, 20, 10], "iscrowd": 0,
             "segmentation": [[10, 5, 30, 5, 30, 15, 10, 15]]},
            {"id": 2, "image_id": 10, "category_id": 3, "bbox": [10, 5, 20, 10], "iscrowd": 0, "segmentation": rle},
            {"id": 3, "image_id": 10, "category_id": 3, "bbox": [-5, 20, 20, 20], "iscrowd": 1, "segmentation": uncompressed},
        ],
    }
    path = root / "instances.json"
    path.write_text(json.dumps(data))
    return path


def _uncompressed_counts(mask):
    flat = mask.reshape(-1, order="F")
    counts, value, run = [], 0, 0
    for v in flat:
        if v == value:
            run += 1
        else:
            counts.append(run)
            value, run = v, 1
    counts.append(run)
    return counts


def test_records_boxes_classes_and_masks(tmp_path):
    ds = load_coco(write_fixture(tmp_path))
    assert ds.class_names == ["cat", "dog"] and ds.category_ids == [3, 7]  # sorted by id
    assert len(ds) == 2  # the empty image is kept (negatives)
    r = ds[0]
    np.testing.assert_array_equal(r.class_ids, [1, 0, 0])
    np.testing.assert_allclose(r.boxes[0], [5, 10, 15, 30])  # y1 x1 y2 x2
    np.testing.assert_allclose(r.boxes[2], [20, 0, 30, 15])  # clipped to the 40x30 image
    np.testing.assert_array_equal(r.iscrowd, [False, False, True])
    masks = ds.load_masks(0)
    assert masks.shape == (3, 30, 40)
    assert masks[1].sum() == 200 and masks[2].sum() == 200  # RLE and uncompressed RLE
    assert abs(int(masks[0].sum()) - 200) <= 40  # polygon rasterisation includes edges
    assert ds.load_image(0).shape == (30, 40, 3)
    assert ds.class_counts().tolist() == [1, 1]
    assert len(load_coco(write_fixture(tmp_path), include_empty_images=False)) == 1


@pytest.mark.parametrize(
    "annotation, message",
    [
        ({"category_id": 5}, r"annotation 9 \(a\.png\): unknown category_id 5 \(known: 3, 7\)"),
        ({"bbox": [1, 1, 0, 4]}, r"annotation 9 \(a\.png\): bbox \[1, 1, 0, 4\] has zero size"),
        ({"bbox": [50, 1, 4, 4]}, r"bbox \[50, 1, 4, 4\] lies outside the 40x30 image"),
        ({"bbox": [1, 2, 3]}, r"annotation 9 \(a\.png\): bbox must be \[x, y, w, h\]"),
        ({"image_id": 99}, r"annotation 9: image_id 99 is not in 'images'"),
    ],
)
def test_bad_annotations_name_file_and_annotation(tmp_path, annotation, message):
    ann = {"id": 9, "image_id": 10, "category_id": 7, "bbox": [1, 1, 4, 4], **annotation}
    path = write_fixture(tmp_path, annotations=[ann])
    with pytest.raises(DataError, match=message) as err:
        load_coco(path)
    assert str(err.value).startswith(str(path)) and "\n" not in str(err.value)


def test_invalid_boxes_can_be_skipped_explicitly(tmp_path):
    anns = [
        {"id": 1, "image_id": 10, "category_id": 7, "bbox": [1, 1, 0, 4]},
        {"id": 2, "image_id": 10, "category_id": 7, "bbox": [1, 1, 4, 4]},
    ]
    ds = load_coco(write_fixture(tmp_path, annotations=anns), invalid_boxes="skip")
    assert ds[0].num_instances == 1


def test_missing_and_corrupt_images(tmp_path):
    path = write_fixture(tmp_path)
    (tmp_path / "b.png").unlink()
    with pytest.raises(DataError, match=r"image 'b\.png' not found; tried .*b\.png, .*images/b\.png \(pass the image folder with --images\)"):
        load_coco(path)
    path = write_fixture(tmp_path)
    (tmp_path / "b.png").write_bytes(b"not an image")
    ds = load_coco(path)
    with pytest.raises(DataError, match=r"b\.png: cannot decode \(corrupt or not an image\)"):
        ds.load_image(1)


def test_image_size_mismatch_and_bad_json(tmp_path):
    images = [{"id": 10, "file_name": "a.png", "width": 41, "height": 30}]
    ds = load_coco(write_fixture(tmp_path, images=images, annotations=[]))
    with pytest.raises(DataError, match=r"a\.png: image is 40x30 but the annotations say 41x30"):
        ds.load_image(0)
    bad = tmp_path / "bad.json"
    bad.write_text('{"images": [}')
    with pytest.raises(DataError, match=r"bad\.json: invalid JSON at line 1"):
        load_coco(bad)
    bad.write_text('{"images": []}')
    with pytest.raises(DataError, match=r"missing or invalid 'annotations' list"):
        load_coco(bad)
