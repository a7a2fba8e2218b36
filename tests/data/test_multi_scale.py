"""Multi-scale training: the input size changes every N batches (seeded), the first two
batches differ (so Keras leaves the image dimensions open), and a YOLO model trains on it."""

import numpy as np
import pytest

from detectlab.data.coco import load_coco
from detectlab.errors import ConfigError
from detectlab.registry import MODELS
from detectlab.training.runner import make_generators, train


def test_sizes_change_every_n_batches_and_targets_follow(shapes_dir, tiny_cfg):
    cfg = tiny_cfg("train.multi_scale={sizes: [64, 96, 128], every: 2}", "train.batch_size=4")
    train_gen, _ = make_generators(cfg, MODELS.get("yolov3"), load_coco(shapes_dir / "instances_train.json"), None, 3)
    sizes = [train_gen.size_of(i) for i in range(len(train_gen))]
    assert sizes[0] != sizes[1] and set(sizes) <= {64, 96, 128} and len(set(sizes)) == 3
    assert all(sizes[i] == sizes[i + 1] for i in range(1, len(sizes) - 1, 2))  # groups of 2 after batch 0
    for index in (0, 1):
        images, y = train_gen[index]
        s = sizes[index]
        assert images.shape[1:3] == (s, s) and y["targets_0"].shape[1:3] == (s // 32, s // 32)
    train_gen.set_epoch(1)
    assert [train_gen.size_of(i) for i in range(len(train_gen))] != sizes  # drawn again each epoch


def test_yolo_trains_at_several_sizes_on_mosaics(tmp_path, shapes_dir, tiny_cfg):
    (tmp_path / "shapes").symlink_to(shapes_dir)
    result = train(tiny_cfg("train.epochs=1", "train.steps_per_epoch=3", "train.multi_scale={sizes: [64, 96], every: 1}",
                            "augment.mosaic=1.0", "augment.mixup=0.5", "augment.degrees=5", "eval.after_training=false"),
                   tmp_path)
    assert np.isfinite(result.history["loss"][-1]) and np.isfinite(result.history["val_loss"][-1])


@pytest.mark.parametrize("recipe, value, message", [
    ("yolov3_tiny_instant.yaml", "{sizes: [64, 80]}", "expected two or more multiples of 32"),
    ("mask_rcnn_r50_instant.yaml", "{sizes: [64, 128]}", "mask_rcnn is built for one input size"),
])
def test_bad_multi_scale_settings_are_one_line_errors(recipe, value, message, tmp_path, tiny_cfg):
    with pytest.raises(ConfigError, match=message):
        train(tiny_cfg(f"train.multi_scale={value}", recipe=recipe), tmp_path)
