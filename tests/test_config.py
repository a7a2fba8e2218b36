from pathlib import Path

import pytest

from detectlab.config import load_config
from detectlab.errors import ConfigError

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("recipe", sorted(p.relative_to(ROOT / "models") for p in (ROOT / "models").rglob("*.yaml")))
def test_every_recipe_parses(recipe):
    from detectlab.registry import MODELS

    cfg = load_config(ROOT / "models" / recipe)
    MODELS.get(cfg.model.family).check(cfg.model)
    assert cfg.total_epochs() > 0


def test_base_inheritance_and_stages():
    cfg = load_config(ROOT / "models" / "yolov3_tiny_coco416.yaml")
    assert cfg.model.backbone == "darknet_tiny"
    assert cfg.model.ignore_thresh == 0.7
    assert cfg.data.invalid_boxes == "skip"  # inherited from the Darknet-53 recipe
    stages = cfg.stages()
    assert [(s.layers, s.epochs, s.lr) for s in stages] == [("heads", 50, 1e-3), ("all", 50, 1e-4)]


def test_overrides_are_typed(tmp_path):
    cfg = load_config(ROOT / "models" / "yolov3_tiny_shapes.yaml", ["train.lr=0.01", "train.batch_size=4", "data.val=null"])
    assert cfg.train.lr == 0.01 and cfg.train.batch_size == 4 and cfg.data.val is None
    assert cfg.stages()[0].lr == 0.01


def _write(tmp_path, text):
    path = tmp_path / "r.yaml"
    path.write_text(text)
    return path


def test_unknown_key_names_file_and_field_and_suggests(tmp_path):
    path = _write(tmp_path, "model: {family: yolov3}\ntrain: {epoch: 3}\n")
    with pytest.raises(ConfigError) as err:
        load_config(path)
    assert str(err.value) == f"{path}: train.epoch: unknown key (did you mean 'epochs'?)"


def test_wrong_types_and_values(tmp_path):
    path = _write(tmp_path, "model: {family: yolov3}\n")
    with pytest.raises(ConfigError, match=r"train\.epochs: expected an integer, got 'ten'"):
        load_config(path, ["train.epochs=ten"])
    with pytest.raises(ConfigError, match=r"train\.precision: 'half' is not one of auto, float32, mixed_bfloat16, mixed_float16"):
        load_config(path, ["train.precision=half"])
    with pytest.raises(ConfigError, match=r"model\.family: unknown model family 'yolo3' \(did you mean 'yolov3'\?\)"):
        load_config(path, ["model.family=yolo3"])
    with pytest.raises(ConfigError, match="expected key=value"):
        load_config(path, ["train.lr"])


def test_model_section_is_the_family_dataclass(tmp_path):
    path = _write(tmp_path, "model: {family: yolov3, anchor_mask: [[0]]}\n")
    with pytest.raises(ConfigError, match=r"model\.anchor_mask: unknown key \(did you mean 'anchor_masks'\?\)"):
        load_config(path)


def test_round_trip_through_yaml(tmp_path):
    cfg = load_config(ROOT / "models" / "yolov3_darknet53_coco416.yaml")
    cfg.save(tmp_path / "c.yaml")
    again = load_config(tmp_path / "c.yaml")
    assert again == cfg


@pytest.mark.parametrize(
    "override, message",
    [
        ("train.lr=-5", "train.lr: expected a positive number, got -5.0"),
        ("train.epochs=-1", "train.epochs: expected at least 1, got -1"),
        ("train.batch_size=0", "train.batch_size: expected at least 1, got 0"),
        ("train.workers=-2", "train.workers: expected 0 or more, got -2"),
        ("train.stages=[{epochs: 2, lr: 0}]", "train.stages[0].lr: expected a positive number, got 0.0"),
        ("eval.score_threshold=1.5", "eval.score_threshold: expected in [0, 1], got 1.5"),
        ("predict.max_detections=0", "predict.max_detections: expected at least 1, got 0"),
        ("model.image_size=0", "model.image_size: expected between 1 and 8192 pixels, got 0"),
        ("model.ignore_thresh=1.2", "model.ignore_thresh: expected in [0, 1], got 1.2"),
        ("model.anchors=[[8, 8], [-1, 12]]", "model.anchors[1][0]: expected a positive number, got -1.0"),
        ("data.max_boxes=0", "data.max_boxes: expected at least 1, got 0"),
        ("data.val_fraction=1", "data.val_fraction: expected in [0, 1), got 1.0"),
        ("augment.hflip=2", "augment.hflip: expected in [0, 1], got 2.0"),
        ("augment.scale=[2, 1]", "augment.scale: expected [low, high] with low <= high, got [2.0, 1.0]"),
        ("loss.weights={yolo_xy_loss: -1}", "loss.weights.yolo_xy_loss: expected 0 or more, got -1.0"),
        ("train.reduce_lr_on_plateau={factor: 1.5}", "train.reduce_lr_on_plateau.factor: expected in (0, 1), got 1.5"),
    ],
)
def test_numeric_values_are_range_checked_where_the_recipe_loads(tmp_path, override, message):
    recipe = ROOT / "models" / "yolov3_tiny_shapes.yaml"
    with pytest.raises(ConfigError) as err:
        load_config(recipe, [override])
    assert str(err.value) == f"{recipe}: {message}"


def test_a_zero_batch_size_in_yaml_is_one_line_naming_the_key(tmp_path):
    path = _write(tmp_path, f"base: {ROOT / 'models' / 'yolov3_tiny_shapes.yaml'}\ntrain: {{batch_size: 0}}\n")
    with pytest.raises(ConfigError) as err:
        load_config(path)
    assert str(err.value) == f"{path}: train.batch_size: expected at least 1, got 0"
