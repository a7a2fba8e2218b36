"""train.monitor: names checked before training, direction inferred, and the checkpoint /
EarlyStopping / ReduceLROnPlateau callbacks the runner makes follow it (hand-made histories)."""

import json
import os

import keras
import numpy as np
import pytest

from detectlab.errors import ConfigError
from detectlab.registry import MODELS
from detectlab.training.callbacks import AtomicCheckpoint, NonFiniteLossGuard
from detectlab.training.monitors import infer_mode, logged_names, resolve_monitors
from detectlab.training.runner import make_callbacks
from detectlab.training.trainers import trainer_for

EVAL_NAMES = ("val_AP", "val_AP50", "val_AP75", "val_AP50_square")


def test_mode_follows_the_name_unless_set():
    assert [infer_mode(n) for n in ("val_AP50", "val_mask_AP", "AP75", "class_acc", "val_loss", "yolo_wh_loss")] == \
        ["max", "max", "max", "max", "min", "min"]
    assert infer_mode("val_loss", "max") == "max"
    with pytest.raises(ConfigError, match=r"^train.monitor: cannot tell whether 'learning_rate' is better higher or lower"):
        infer_mode("learning_rate")


def test_logged_names_of_both_loops(tiny_cfg):
    yolo_family = MODELS.get("yolov3")
    yolo = yolo_family.build(tiny_cfg(), 3, None)
    names = logged_names(yolo, trainer_for(yolo_family), True, EVAL_NAMES)
    assert {"loss", "yolo_wh_loss", "l2_loss", "learning_rate", "val_loss", "val_yolo_wh_loss", "val_AP50"} <= names
    frcnn_family = MODELS.get("faster_rcnn")
    frcnn = frcnn_family.build(tiny_cfg(recipe="faster_rcnn_resnet50_instant.yaml"), 3, None)
    names = logged_names(frcnn, trainer_for(frcnn_family), False)
    assert {"rpn_loss", "class_acc", "class_loss", "rois_positive", "loss"} <= names and not any(n.startswith("val_") for n in names)


@pytest.mark.parametrize(
    "overrides, validation, message",
    [
        (["train.monitor=val_ap50"], True, "train.monitor: 'val_ap50' is never logged (did you mean 'val_AP50'?)"),
        (["train.monitor=val_AP50", "eval.interval=0"], True, "train.monitor: 'val_AP50' is never logged (COCO evaluation during training is off: set eval.interval)"),
        (["train.monitor=val_AP50"], False, "train.monitor: 'val_AP50' is never logged (there is no validation split: data.val is null)"),
        (["train.early_stopping={monitor: val_mask_AP}"], True, "train.early_stopping.monitor: 'val_mask_AP' is never logged"),
    ],
)
def test_a_never_logged_monitor_is_one_config_error(tiny_cfg, overrides, validation, message):
    cfg = tiny_cfg(*overrides)
    logged = {"loss", "yolo_wh_loss"} | ({"val_loss", "val_yolo_wh_loss"} if validation else set())
    logged |= set(EVAL_NAMES) if validation and cfg.eval.interval else set()
    with pytest.raises(ConfigError) as info:
        resolve_monitors(cfg, logged, validation)
    assert str(info.value).startswith(message) and "\n" not in str(info.value)


def test_monitors_inherit_train_monitor_and_val_loss_falls_back_without_validation(tiny_cfg):
    cfg = tiny_cfg("train.monitor=val_AP50", "train.early_stopping={patience: 2}", "train.reduce_lr_on_plateau={monitor: val_loss}")
    m = resolve_monitors(cfg, {"loss", "val_loss", *EVAL_NAMES}, True)
    assert (m.checkpoint.name, m.checkpoint.mode) == ("val_AP50", "max")
    assert (m.early_stopping.name, m.early_stopping.mode) == ("val_AP50", "max")
    assert (m.plateau.name, m.plateau.mode) == ("val_loss", "min")
    assert resolve_monitors(tiny_cfg(), {"loss"}, False).checkpoint.name == "loss"


def _drive(callbacks, history: list[dict]) -> list[int]:
    """Feed hand-made epoch logs to ``callbacks`` on a small Keras model; the epochs run."""
    model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
    model.compile(optimizer=keras.optimizers.SGD(0.1), loss="mse")
    model.stop_training = False
    callback_list = keras.callbacks.CallbackList(callbacks, model=model, epochs=len(history))
    callback_list.on_train_begin()
    ran = []
    for epoch, logs in enumerate(history):
        callback_list.on_epoch_begin(epoch)
        callback_list.on_epoch_end(epoch, dict(logs))
        ran.append(epoch + 1)
        if model.stop_training:
            break
    callback_list.on_train_end()
    return ran


# val_AP50 per epoch; None: an epoch without evaluation (eval.interval > 1)
AP50 = [0.10, 0.40, None, 0.35, 0.62, 0.50, None, 0.58, 0.61, 0.60]


def _history(values):
    return [{"loss": 1.0 / (k + 1), **({} if v is None else {"val_AP50": v})} for k, v in enumerate(values)]


def test_best_keras_is_the_epoch_of_the_highest_val_ap50(tmp_path):
    checkpoint = AtomicCheckpoint(tmp_path, keep=20, monitor="val_AP50", mode="max", guard=NonFiniteLossGuard())
    assert _drive([checkpoint], _history(AP50)) == list(range(1, 11))
    assert os.path.samefile(tmp_path / "best.keras", tmp_path / "epoch_005.keras")  # 0.62; the loss kept falling
    state = json.loads((tmp_path / "state.json").read_text())
    assert (state["best_epoch"], state["best"], state["mode"]) == (5, 0.62, "max")
    # a resumed run keeps the best so far; a lower AP does not replace it
    again = AtomicCheckpoint(tmp_path, keep=20, monitor="val_AP50", mode="max")
    _drive([again], [{"val_AP50": 0.3}])
    assert again.best_epoch == 5 and os.path.samefile(tmp_path / "best.keras", tmp_path / "epoch_005.keras")


def test_early_stopping_and_plateau_on_ap_from_the_runner(tmp_path, tiny_cfg):
    cfg = tiny_cfg("train.monitor=val_AP50", "train.early_stopping={patience: 2, min_stage_fraction: 0}",
                   "train.reduce_lr_on_plateau={patience: 1, factor: 0.5, smoothing: 0, patience_fraction: 0}",
                   "train.schedule.decay=constant")  # the raw values (smoothing: tests/tools/test_users_files.py)
    monitors = resolve_monitors(cfg, {"loss", "val_loss", *EVAL_NAMES}, True)
    made = make_callbacks(cfg, tmp_path, NonFiniteLossGuard(), False, 0, 0, None, monitors)
    wanted = [cb for cb in made if isinstance(cb, (AtomicCheckpoint, keras.callbacks.EarlyStopping, keras.callbacks.ReduceLROnPlateau))]
    assert len(wanted) == 3
    plateau = next(cb for cb in wanted if isinstance(cb, keras.callbacks.ReduceLROnPlateau))
    # best 0.62 at epoch 5; evaluations at 6 (0.50) and 8 (0.58) do not improve: patience 2 is
    # counted in evaluations (epoch 7 logs no AP), so training stops after epoch 8
    assert _drive(wanted, _history(AP50)) == [1, 2, 3, 4, 5, 6, 7, 8]
    assert json.loads((tmp_path / "checkpoints" / "state.json").read_text())["best_epoch"] == 5
    # the learning rate was halved after each evaluation that did not improve (epochs 4, 6, 8)
    assert float(np.asarray(plateau.model.optimizer.learning_rate)) == pytest.approx(0.1 / 8)
