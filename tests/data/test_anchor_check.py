"""The anchor check at training start: best possible recall on a hand-made set, the warning
with the k-means command, and model.anchors: auto."""

import numpy as np
import pytest
import yaml

from detectlab.data.anchor_kmeans import best_possible_recall
from detectlab.data.coco import load_coco
from detectlab.models.yolov3 import TINY_ANCHORS, fit_yolo_anchors
from detectlab.training.runner import train


def test_best_possible_recall_on_a_hand_made_set():
    sizes = np.array([[10, 10], [40, 40], [100, 10]])
    # 40x40 is 4x the 10x10 anchor (not within 4x); 100x10 is 10x as wide
    assert best_possible_recall(sizes, np.array([[10, 10]])) == pytest.approx(1 / 3)
    # 40x40 fits 50x40 (0.8); 100x10 is 2x as wide but a quarter as high as 50x40: still out
    assert best_possible_recall(sizes, np.array([[10, 10], [50, 40]])) == pytest.approx(2 / 3)
    assert best_possible_recall(sizes, np.array([[10, 10], [50, 40], [60, 8]])) == 1.0


def test_poor_anchors_warn_with_the_kmeans_command_and_auto_refits(shapes_dir, tiny_cfg, detectlab_log):
    dataset = load_coco(shapes_dir / "instances_train.json")
    far = "model.anchors=[[200, 10], [10, 200], [300, 300], [400, 400], [500, 500], [600, 600]]"
    fit_yolo_anchors(tiny_cfg(far), dataset)
    warning = next(r.getMessage() for r in detectlab_log.records if r.levelname == "WARNING")
    assert "the anchors reach only 0.0% of the training boxes" in warning
    assert f"python tools/kmeans_anchors.py --data {shapes_dir / 'instances_train.json'} --image-size 64 -k 6" in warning
    auto = fit_yolo_anchors(tiny_cfg("model.anchors=auto"), dataset)
    assert len(auto.model.anchors) == 6 and auto.model.anchors != "auto"
    assert "anchors (k-means on" in detectlab_log.messages[-1] and "best possible recall 1.000" in detectlab_log.messages[-1]
    # output convolutions loaded from a file keep the anchors they were trained with: the file's
    # (its Darknet .cfg, a checkpoint's), else the backbone's reference ones
    kept = fit_yolo_anchors(tiny_cfg("model.anchors=auto"), dataset, ["darknet_conv_0", "yolo_output_0"])
    assert kept.model.anchors == [list(map(float, a)) for a in TINY_ANCHORS]
    stated = {"anchors": [[9, 9], [13, 13], [17, 17], [21, 21], [27, 27], [33, 33]]}
    from_file = fit_yolo_anchors(tiny_cfg("model.anchors=auto"), dataset, ["yolo_output_0"], stated=stated)
    assert from_file.model.anchors == [list(map(float, a)) for a in stated["anchors"]]
    assert fit_yolo_anchors(tiny_cfg("model.anchors=auto"), dataset, ["darknet_conv_0"], stated=stated).model.anchors \
        == auto.model.anchors  # fresh outputs: fitted to the data whatever the file says


def test_a_file_does_not_replace_auto_anchors_when_training(tiny_cfg):
    from detectlab.models.loading import adopt_file_settings
    from detectlab.weights.formats import FileSettings

    settings = FileSettings("yolov3-tiny.weights + yolov3-tiny.cfg", {"anchors": [[10, 14]] * 6, "anchor_masks": [[3, 4, 5], [1, 2, 3]]})
    training = adopt_file_settings(tiny_cfg("model.anchors=auto"), settings, training=True, keep_auto=True)
    assert training.model.anchors == "auto" and training.model.anchor_masks == [[3, 4, 5], [1, 2, 3]]
    # predicting, evaluating, converting: the file's anchors
    assert adopt_file_settings(tiny_cfg("model.anchors=auto"), settings).model.anchors == [[10, 14]] * 6


def test_a_run_with_auto_anchors_saves_the_fitted_ones(tmp_path, shapes_dir, tiny_cfg):
    (tmp_path / "shapes").symlink_to(shapes_dir)
    result = train(tiny_cfg("model.anchors=auto", "train.epochs=1", "train.steps_per_epoch=1", "eval.after_training=false",
                            "eval.interval=0"), tmp_path)
    saved = yaml.safe_load((tmp_path / "config.yaml").read_text())["model"]["anchors"]
    assert saved == result.model.constructor_args["anchors"] and len(saved) == 6
