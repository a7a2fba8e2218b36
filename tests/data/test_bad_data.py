"""A user's broken data: each case stops with one line naming the file / annotation, or
is skipped and counted when the recipe says so (``data.invalid_boxes``, ``data.bad_images``)."""

import json
import re

import cv2
import numpy as np
import pytest

from detectlab.config import load_config
from detectlab.data.coco import load_coco
from detectlab.data.loading import holdout_split, load_split, load_splits
from detectlab.data.image_check import check_images, image_problem
from detectlab.data.records import decode_rgb, read_image
from detectlab.errors import DataError
from tests.conftest import INSTANT


def write_coco(root, n=3, annotations=None, images=None, ext="jpg"):
    """``n`` 40x30 images ``img{k}.{ext}`` (id 100+k) with one 'dot' box each, as COCO JSON."""
    root.mkdir(parents=True, exist_ok=True)
    for k in range(n):
        noise = np.random.default_rng(k).integers(0, 256, (30, 40, 3), dtype=np.uint8)  # no tiny files
        cv2.imwrite(str(root / f"img{k}.{ext}"), noise)
    data = {
        "images": images or [{"id": 100 + k, "file_name": f"img{k}.{ext}", "width": 40, "height": 30} for k in range(n)],
        "categories": [{"id": 1, "name": "dot"}],
        "annotations": annotations if annotations is not None else [
            {"id": k + 1, "image_id": 100 + k, "category_id": 1, "bbox": [5, 5, 10, 10]} for k in range(n)
        ],
    }
    path = root / "mine.json"
    path.write_text(json.dumps(data))  # NaN / Infinity are written the way Python's json writes them
    return path


def _one_line(err) -> str:
    text = str(err.value)
    assert "\n" not in text
    return text


def test_duplicate_image_ids_name_the_id_and_both_files(tmp_path):
    images = [{"id": 7, "file_name": "img0.jpg", "width": 40, "height": 30},
              {"id": 7, "file_name": "img1.jpg", "width": 40, "height": 30}]
    path = write_coco(tmp_path, 2, annotations=[], images=images)
    with pytest.raises(DataError) as err:
        load_coco(path)
    assert _one_line(err) == f"{path}: image id 7 is used twice: img0.jpg and img1.jpg"


@pytest.mark.parametrize(
    "segmentation, message",
    [
        ([[5, 5, 15, 5, 15, 15, 5]], "segmentation polygon 0 has an odd number of coordinates (7): x and y must come in pairs"),
        ([[5, 5, 15, 5, 15, 15, 5, 15], [5, 5, 15, 15]], "segmentation polygon 1 has 2 points; a polygon needs at least 3"),
        ([[5, 5, 15, 5, float("nan"), 15]], "segmentation polygon 0 has a NaN or infinite value"),
        ([["5", 5, 15, 5, 15, 15]], "segmentation polygon 0 must be a list of numbers [x1, y1, x2, y2, ...]"),
    ],
)
def test_bad_polygons_name_the_annotation(tmp_path, segmentation, message):
    anns = [{"id": 4, "image_id": 100, "category_id": 1, "bbox": [5, 5, 10, 10], "segmentation": segmentation}]
    path = write_coco(tmp_path, 1, annotations=anns)
    with pytest.raises(DataError) as err:
        load_coco(path)
    assert _one_line(err) == f"{path}: annotation 4 (img0.jpg): {message}"


@pytest.mark.parametrize("bbox", [[float("nan"), 5, 10, 10], [5, 5, float("inf"), 10], [5, 5, 10, float("-inf")]])
def test_non_finite_boxes_stop_or_are_skipped_and_counted(tmp_path, bbox, detectlab_log):
    anns = [{"id": 1, "image_id": 100, "category_id": 1, "bbox": bbox},
            {"id": 2, "image_id": 100, "category_id": 1, "bbox": [5, 5, 10, 10]}]
    path = write_coco(tmp_path, 1, annotations=anns)
    with pytest.raises(DataError) as err:
        load_coco(path)
    assert "annotation 1 (img0.jpg): bbox" in _one_line(err) and "has a NaN or infinite value" in str(err.value)
    dataset = load_coco(path, invalid_boxes="skip")
    assert dataset[0].num_instances == 1 and np.isfinite(dataset[0].boxes).all()
    assert f"{path}: skipped 1 invalid boxes (data.invalid_boxes=skip)" in detectlab_log.messages


def _truncate(path, keep=0.6):  # (0.6 cuts into the image data; 0.1 into the headers)
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)])


@pytest.mark.parametrize("ext, keep, reason", [("jpg", 0.6, "truncated JPEG (no end-of-image marker): corrupt image"),
                                               ("jpg", 0.1, "truncated JPEG (no end-of-image marker): corrupt image"),
                                               ("png", 0.6, "truncated PNG (no IEND chunk): corrupt image")])
def test_truncated_images_are_found_up_front(tmp_path, ext, keep, reason):
    path = write_coco(tmp_path, 3, ext=ext)
    image = tmp_path / f"img1.{ext}"
    _truncate(image, keep)
    dataset = load_coco(path)
    assert image_problem(dataset[1]) == reason and image_problem(dataset[0]) is None
    with pytest.raises(DataError) as err:
        check_images(dataset)
    assert _one_line(err) == f"{image}: {reason} (set data.bad_images=skip to leave such images out)"
    if keep > 0.5:  # the one decoder refuses it too (a library caller skipping the up-front check)
        with pytest.raises(DataError, match=f"^{re.escape(str(image))}: {re.escape(reason)}$"):
            decode_rgb(image)


def test_bad_images_skip_counts_and_lists_them_and_drops_them_from_the_ground_truth(tmp_path, detectlab_log):
    path = write_coco(tmp_path, 4)
    _truncate(tmp_path / "img1.jpg")
    (tmp_path / "img2.jpg").write_bytes(b"<html>not an image</html>")
    cv2.imwrite(str(tmp_path / "img3.jpg"), np.zeros((31, 40, 3), np.uint8))  # size differs from the JSON
    cfg = load_config(INSTANT / "yolov3_tiny_instant.yaml", [f"data.train={path}", "data.val=null", "data.bad_images=skip"])
    dataset = load_split(cfg, "train")
    assert [r.image_id for r in dataset.records] == [100]
    assert dataset.coco().getImgIds() == [100] and len(dataset.coco().getAnnIds()) == 1
    warning = next(m for m in detectlab_log.messages if "data.bad_images=skip" in m)
    assert warning.startswith(f"{path}: skipped 3 of 4 images (data.bad_images=skip): ")
    assert "img1.jpg: truncated JPEG" in warning and "img2.jpg: cannot decode (corrupt or not an image)" in warning
    assert "img3.jpg: image is 40x31 but the annotations say 40x30" in warning
    with pytest.raises(DataError, match=r"img1\.jpg: truncated JPEG .* \(set data\.bad_images=skip"):
        load_split(load_config(INSTANT / "yolov3_tiny_instant.yaml", [f"data.train={path}", "data.val=null"]), "train")


def test_more_instances_than_max_boxes_warns_once_with_the_count(tmp_path, detectlab_log):
    anns = [{"id": k, "image_id": 101, "category_id": 1, "bbox": [k % 30, 5, 5, 5]} for k in range(1, 8)]
    path = write_coco(tmp_path, 3, annotations=anns + [{"id": 99, "image_id": 100, "category_id": 1, "bbox": [1, 1, 5, 5]}])
    cfg = load_config(INSTANT / "yolov3_tiny_instant.yaml", [f"data.train={path}", "data.val=null", "data.max_boxes=5"])
    load_split(cfg, "train")
    warnings = [m for m in detectlab_log.messages if "data.max_boxes" in m]
    assert warnings == [f"1 images have more than data.max_boxes=5 instances (up to 7 in {tmp_path / 'img1.jpg'}): "
                        "the extra ones are left out of the training targets; set data.max_boxes=7 to keep them all"]


def test_holdout_split_is_seeded_disjoint_and_has_its_own_ground_truth(tmp_path, detectlab_log):
    path = write_coco(tmp_path, 10)
    cfg = load_config(INSTANT / "yolov3_tiny_instant.yaml", [f"data.train={path}", "data.val=null", "data.val_fraction=0.2"])
    train_set, val_set = load_splits(cfg)
    assert [r.image_id for r in load_split(cfg, "train")] == [r.image_id for r in train_set]
    train_ids, val_ids = {r.image_id for r in train_set}, {r.image_id for r in val_set}
    assert len(train_ids) == 8 and len(val_ids) == 2 and not train_ids & val_ids
    assert set(val_set.coco().getImgIds()) == val_ids and set(train_set.coco().getImgIds()) == train_ids
    assert {r.image_id for r in load_split(cfg, "val")} == val_ids  # the same split every time
    assert f"validating on 2 images held out of {path} (data.val_fraction=0.2, seed 0); pass --val to choose them" in detectlab_log.messages
    with pytest.raises(DataError, match=r"cannot hold out 20% of 1 images for validation; pass --val \(or --val none\)"):
        holdout_split(load_coco(write_coco(tmp_path / "one", 1)), 0.2, 0)


def test_a_jpeg_with_a_trailer_after_its_end_marker_is_not_truncated(tmp_path):
    path = write_coco(tmp_path, 1)
    image = tmp_path / "img0.jpg"
    image.write_bytes(image.read_bytes() + b"SEFH" + bytes(4000) + b"SEFT")  # as some phone cameras append
    check_images(load_coco(path))
    assert read_image(load_coco(path)[0]).shape == (30, 40, 3)
