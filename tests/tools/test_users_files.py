"""A user's files work as they are: ``--data`` finds its images where the file says (never in
the recipe's folders), results are matched to their ground truth by file name, class names
come from names files, a checkpoint's own anchors are used, and small-data schedules do what
the log says."""

from __future__ import annotations

import argparse
import json
import shutil

import keras
import numpy as np
import pytest

from detectlab.config import load_config
from detectlab.data.class_names import COCO_CLASS_NAMES, read_class_names
from detectlab.data.coco import load_coco, write_coco
from detectlab.data.loading import load_splits
from detectlab.errors import ConfigError, DataError
from tests.conftest import INSTANT, ROOT, tool


@pytest.fixture
def users_dataset(tmp_path, shapes_dir):
    """The shapes training split as ``datasets/convert.py`` writes a user's data: images in
    ``photos/``, the JSON elsewhere with ``file_name`` relative to it."""
    (tmp_path / "photos").mkdir()
    data = json.loads((shapes_dir / "instances_train.json").read_text())
    for image in data["images"]:
        shutil.copy(shapes_dir / image["file_name"], tmp_path / "photos" / image["file_name"].split("/")[-1])
        image["file_name"] = str(tmp_path / "photos" / image["file_name"].split("/")[-1])
    (tmp_path / "labels").mkdir()
    write_coco(data, tmp_path / "labels" / "mine.json")
    return tmp_path / "labels" / "mine.json", tmp_path / "photos"


def train_flags(*argv):
    import tools.train as train_tool

    args = train_tool.parse_args(["--workdir", "w", *map(str, argv)])
    base = load_config(ROOT / "models" / "yolov3_tiny_finetune.yaml")
    return load_config(ROOT / "models" / "yolov3_tiny_finetune.yaml", args.overrides + train_tool.overrides_from_flags(
        args, bool(base.train.stages), 0.1, base.data))


def test_data_of_the_user_is_found_where_its_file_says(users_dataset):
    labels, photos = users_dataset
    assert json.loads(labels.read_text())["images"][0]["file_name"].startswith("../photos/")
    # the README's fine-tune recipe names COCO's folders; they belong to COCO, not to --data
    cfg = train_flags("--data", labels)
    assert cfg.data.images is None and cfg.data.classes is None
    train, val = load_splits(cfg)
    assert len(train) + len(val) == 48 and train.records[0].path.startswith(str(labels.parent))
    # --images DIR works too: the file's relative names, else their bare names, in DIR
    cfg = train_flags("--data", labels, "--images", photos)
    assert load_splits(cfg)[0].records[0].path.startswith(str(photos))
    # a missing image: every place tried is named
    first = json.loads(labels.read_text())["images"][0]["file_name"]
    (labels.parent / first).unlink()
    with pytest.raises(DataError, match=rf"image '{first}' not found; tried .*labels/{first}, .*labels/images/{first}"):
        load_coco(labels)


def test_the_recipes_own_dataset_keeps_its_folders(tmp_path):
    recipe = ROOT / "models" / "faster_rcnn_vgg16_voc.yaml"
    import tools.train as train_tool

    base = load_config(recipe)
    args = train_tool.parse_args(["--workdir", "w", "--data", base.data.train, "--val", base.data.val])
    cfg = load_config(recipe, train_tool.overrides_from_flags(args, False, 0.0, base.data))
    assert (cfg.data.train_split, cfg.data.val_split, cfg.data.classes) == ("trainval", "test", base.data.classes)


def test_evaluate_matches_results_to_ground_truth_by_file_name(tmp_path, shapes_dir, detectlab_log):
    from detectlab.evaluation.coco_eval import evaluate_results

    gt = json.loads((shapes_dir / "instances_val.json").read_text())
    truth = [{"image_id": a["image_id"], "category_id": a["category_id"], "bbox": a["bbox"], "score": 0.9}
             for a in gt["annotations"]]
    names = {i["id"]: f"/somewhere/{i['file_name']}" for i in gt["images"]}
    order = {image_id: k for k, image_id in enumerate(sorted(names, reverse=True))}  # predict.py's positions
    positions = [{**r, "image_id": order[r["image_id"]], "file_name": names[r["image_id"]]} for r in truth]
    assert evaluate_results(shapes_dir / "instances_val.json", positions)["bbox"]["AP"] == pytest.approx(
        evaluate_results(shapes_dir / "instances_val.json", truth)["bbox"]["AP"])
    assert "matched by file_name" in detectlab_log.text
    # predict.py on a folder holding other splits' images too: those results are left out, counted
    stray = positions + [{**positions[0], "file_name": "/elsewhere/holiday.jpg", "image_id": 10**6}]
    assert evaluate_results(shapes_dir / "instances_val.json", stray)["bbox"]["AP"] == pytest.approx(
        evaluate_results(shapes_dir / "instances_val.json", truth)["bbox"]["AP"])
    assert "1 results on 1 images that are not in the ground truth left out (e.g. /elsewhere/holiday.jpg)" in detectlab_log.text
    elsewhere = [{**r, "file_name": f"/elsewhere/{k}.jpg", "image_id": 10**6} for k, r in enumerate(positions)]
    with pytest.raises(DataError, match="0.jpg: not among the images of the ground truth"):
        evaluate_results(shapes_dir / "instances_val.json", elsewhere)
    without_names = [{k: v for k, v in r.items() if k != "file_name"} for r in positions]
    with pytest.raises(DataError, match="pass the ground truth to it with --data"):
        evaluate_results(shapes_dir / "instances_val.json", without_names)


def test_class_names_from_files(tmp_path):
    (tmp_path / "coco.names").write_text("person\nbicycle\n\n")
    (tmp_path / "data.yaml").write_text("names: {0: cat, 1: dog}\ntrain: images\n")
    assert read_class_names(str(tmp_path / "coco.names")) == ["person", "bicycle"]
    assert read_class_names(str(tmp_path / "data.yaml")) == ["cat", "dog"]
    assert read_class_names("a, b") == ["a", "b"]
    with pytest.raises(ConfigError, match="file not found"):
        read_class_names(str(tmp_path / "missing.names"))
    assert len(COCO_CLASS_NAMES) == 80 and COCO_CLASS_NAMES[62] == "tv"


def test_a_checkpoints_own_anchors_are_used(tmp_path, tiny_cfg):
    from detectlab.models.loading import model_and_config
    from detectlab.registry import MODELS

    anchors = [[5, 5], [7, 7], [9, 9], [11, 11], [13, 13], [15, 15]]
    cfg = tiny_cfg(f"model.anchors={anchors}", "model.anchor_masks=[[3,4,5],[1,2,3]]")
    MODELS.get("yolov3").build(cfg, 3, None, (["a", "b", "c"], [4, 5, 6])).save(tmp_path / "m.keras")
    model, adopted, _ = model_and_config(tiny_cfg(), str(tmp_path / "m.keras"))  # the recipe's other anchors
    assert adopted.model.anchors == anchors and adopted.model.anchor_masks == [[3, 4, 5], [1, 2, 3]]
    assert model.constructor_args["anchors"] == anchors and model.class_names == ["a", "b", "c"]
    with pytest.raises(ConfigError, match="contradicts .*m.keras"):
        model_and_config(tiny_cfg("model.anchor_masks=[[3,4,5],[0,1,2]]"), str(tmp_path / "m.keras"))


def test_plateau_smooths_and_early_stopping_waits_for_half_the_stage(tiny_cfg, tmp_path, shapes_dir, detectlab_log):
    from detectlab.training.callbacks import NonFiniteLossGuard, SmoothedPlateau
    from detectlab.training.coco_callback import CocoEvaluation
    from detectlab.training.monitors import Monitor, Monitors
    from detectlab.training.runner import make_callbacks

    model = keras.Sequential([keras.Input((1,)), keras.layers.Dense(1)])
    model.compile(optimizer=keras.optimizers.SGD(1.0))
    plateau = SmoothedPlateau(0.5, monitor="val_AP50", mode="max", factor=0.5, patience=2, verbose=0)
    plateau.set_model(model)
    plateau.on_train_begin()
    for epoch, ap in enumerate([0.5, 0.3, 0.45, None, 0.3]):
        plateau.on_epoch_end(epoch, {} if ap is None else {"val_AP50": ap})
    # smoothed: 0.5 (best), 0.4 (wait 1), 0.425 (wait 2: rate halved), no evaluation, 0.3625 (wait 1)
    assert plateau.smoothed == pytest.approx(0.3625)
    assert float(model.optimizer.learning_rate.numpy()) == pytest.approx(0.5)

    cfg = tiny_cfg("train.reduce_lr_on_plateau={patience: 2}", "train.early_stopping={patience: 3}", "eval.interval=2")
    monitors = Monitors(Monitor("val_AP50", "max"), Monitor("val_AP50", "max"), Monitor("val_AP50", "max"))
    evaluation = CocoEvaluation(cfg, load_coco(shapes_dir / "instances_val.json"), False, tmp_path / "logs")
    callbacks = make_callbacks(cfg, tmp_path, NonFiniteLossGuard(), False, 0, 1, evaluation, monitors, (20, 80))
    plateau, early = [c for c in callbacks if isinstance(c, (SmoothedPlateau, keras.callbacks.EarlyStopping))]
    assert plateau.patience == 3  # 10% of the stage's 30 evaluations
    assert early.start_from_epoch == 50  # half of epochs 21-80
    assert "counting from epoch 51" in detectlab_log.text


def test_the_datasets_converter_reads_every_format_through_the_registry(tmp_path):
    from detectlab.registry import DATASET_FORMATS

    assert all(callable(getattr(DATASET_FORMATS.get(name), "read", None)) for name in DATASET_FORMATS.names())
    done = tool("datasets/convert.py", "--from", "cvat", "--input", tmp_path / "a.xml", "--split", "val", "--out", tmp_path / "o.json")
    assert done.returncode == 2 and done.stderr.strip() == "error: argument --split: not for --from cvat"
    done = tool("datasets/convert.py", "--from", "vocc", "--input", tmp_path, "--out", tmp_path / "o.json")
    assert done.returncode == 2 and "did you mean 'voc'" in done.stderr
