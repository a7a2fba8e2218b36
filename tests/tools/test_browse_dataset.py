"""tools/browse_dataset.py: grids drawn from the training generator's own samples, and stats."""

import json

import cv2
import numpy as np

from detectlab.config import load_config
from detectlab.data.loading import load_split
from detectlab.inference.visualize import class_colour
from detectlab.registry import MODELS
from detectlab.training.browse import TILE, anchor_shapes, dataset_stats, draw_sample, render_grids
from detectlab.training.runner import make_generators
from tests.conftest import INSTANT, tool
from tests.data.test_formats import labelme_doc, shape


def labelme_set(root):
    """Three 64x48 LabelMe images: a red-class rectangle and a polygon each; one empty image."""
    for k in range(3):
        root.mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(root / f"{k}.png"), np.full((48, 64, 3), 40 * k, np.uint8))
        shapes = [shape("box", [[4, 4], [30, 20]], "rectangle"), shape("tri", [[40, 10], [60, 10], [50, 40]])] if k < 2 else []
        (root / f"{k}.json").write_text(json.dumps(labelme_doc(f"{k}.png", 64, 48, shapes)))
    return root


def test_grid_tiles_are_the_generator_samples(tmp_path):
    cfg = load_config(INSTANT / "mask_rcnn_r50_instant.yaml", [f"data.train={labelme_set(tmp_path / 'lm')}", "data.val=null"])
    paths = render_grids(cfg, tmp_path / "out", num=3, columns=2, augment=False)
    assert paths == [tmp_path / "out/grid_000.png"]
    picture = cv2.cvtColor(cv2.imread(str(paths[0])), cv2.COLOR_BGR2RGB)
    assert picture.shape == (2 * TILE, 2 * TILE, 3)

    dataset = load_split(cfg, "train")
    _, letterboxed = make_generators(cfg, MODELS.get("mask_rcnn"), dataset, dataset, 2)
    sample = letterboxed.samples(0)[0]  # the first sample the validation-style generator yields
    assert sample.masks is not None and sample.image.shape == (64, 64, 3)
    np.testing.assert_array_equal(picture[:TILE, :TILE], draw_sample(sample, dataset.class_names))
    # the letterbox of a 64x48 image: grey bars (128) above and below, drawn 4x enlarged
    assert (picture[:8, 100:150] == 128).all()
    y1, x1, y2, x2 = np.round(sample.boxes[0] * 4).astype(int)
    assert tuple(picture[y1, (x1 + x2) // 2]) == class_colour(int(sample.class_ids[0]))


def test_stats_text_and_png(tmp_path):
    cfg = load_config(INSTANT / "yolov3_tiny_instant.yaml", [f"data.train={labelme_set(tmp_path / 'lm')}", "data.val=null"])
    text, png = dataset_stats(cfg, tmp_path / "out")
    lines = text.read_text().splitlines()
    assert lines[1:7] == ["images: 3 (1 without labels)", "instances: 4 (+ 0 crowd regions)", "instances per class:",
                          "  box: 2", "  tri: 2",
                          # 26x16 boxes (sqrt 20.4) and 20x30 triangles (24.5); 64 px images: scale 1
                          "box size sqrt(w*h) at 64 px input: min 20.4, p10 20.4, median 22.4, p90 24.5, max 24.5"]
    assert lines[-1] == "anchors (w x h): 8x8, 12x12, 16x16, 20x20, 26x26, 32x32"
    assert cv2.imread(str(png)).shape == (420, 1500, 3)


def test_anchor_shapes_of_each_family():
    frcnn = load_config(INSTANT / "faster_rcnn_vgg16_instant.yaml").model
    np.testing.assert_allclose(anchor_shapes(frcnn)[:3], [[s * a, s * b] for s in frcnn.anchor_scales[:1] for a, b in frcnn.anchor_ratios])
    mrcnn = load_config(INSTANT / "mask_rcnn_r50_instant.yaml").model
    w, h = anchor_shapes(mrcnn).T
    np.testing.assert_allclose(np.sqrt(w * h)[:: len(mrcnn.anchor_ratios)], mrcnn.anchor_scales)


def test_cli_writes_grids_and_stats(tmp_path):
    result = tool("tools/browse_dataset.py", "--config", INSTANT / "yolov3_tiny_instant.yaml", "--data", labelme_set(tmp_path / "lm"),
                  "--set", "data.val=null", "--out", tmp_path / "out", "--augment", "--stats")
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.splitlines() == [str(tmp_path / "out" / n) for n in ("grid_000.png", "stats.txt", "stats.png")]


def test_mosaic_grids_count_the_boxes_cut_off(tmp_path, shapes_dir, detectlab_log):
    # a mosaic enlarged 1.5-2x shows part of its 2S canvas: boxes at the edges are cut off
    overrides = [f"data.train={shapes_dir / 'instances_train.json'}", "data.val=null", "augment.mosaic=1.0",
                 "augment.scale=[1.5, 2.0]", "augment.translate=0.2"]
    cfg = load_config(INSTANT / "yolov3_tiny_instant.yaml", overrides)
    render_grids(cfg, tmp_path / "out", num=8, columns=4, augment=True)
    dataset = load_split(cfg, "train")
    train_gen, _ = make_generators(cfg, MODELS.get("yolov3"), dataset, dataset, dataset.num_classes)
    dropped = sum(s.dropped for s in train_gen.samples(0))  # the same 8 samples (batch 8), seeded as in epoch 0
    assert dropped > 0
    assert f"mosaic / affine: {dropped} boxes of these 8 samples cut off and dropped (under 2 px or 10% visible)" \
        in detectlab_log.messages
