"""Faults around training: a full disk while checkpointing, files a killed write left
behind, and a learning rate changed on resume."""

import errno
import zipfile

import keras
import pytest

from detectlab.errors import TrainingError
from detectlab.training.callbacks import AtomicCheckpoint
from detectlab.training.runner import train


def _tiny_model():
    inputs = keras.Input((3,))
    model = keras.Model(inputs, keras.layers.Dense(2, name="dense")(inputs))
    model.compile(optimizer="adam", loss="mse")
    return model


def test_full_disk_while_checkpointing_is_one_line_and_keeps_the_previous_checkpoint(tmp_path, monkeypatch):
    model = _tiny_model()
    checkpoint = AtomicCheckpoint(tmp_path, keep=3, monitor="loss")
    checkpoint.set_model(model)
    checkpoint.on_epoch_end(0, {"loss": 1.0})
    state = (tmp_path / "state.json").read_text()
    good = (tmp_path / "epoch_001.keras").read_bytes()

    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(zipfile.ZipFile, "writestr", full)
    with pytest.raises(TrainingError) as err:
        checkpoint.on_epoch_end(1, {"loss": 0.5})
    assert str(err.value) == (f"{tmp_path / 'epoch_002.keras'}: cannot write the epoch 2 checkpoint: "
                              "No space left on device; epoch_001.keras and state.json are unchanged")
    monkeypatch.undo()
    assert (tmp_path / "state.json").read_text() == state
    assert (tmp_path / "epoch_001.keras").read_bytes() == good and (tmp_path / "last.keras").read_bytes() == good
    assert sorted(p.name for p in tmp_path.iterdir()) == ["best.keras", "epoch_001.keras", "last.keras", "state.json"]


def test_leftovers_of_a_killed_checkpoint_write_are_removed_when_a_run_starts(tmp_path, detectlab_log):
    (tmp_path / ".epoch_004.k2j3h.tmp.keras").write_bytes(b"half a zip")
    (tmp_path / ".last.abcd.tmp.keras").write_bytes(b"")
    (tmp_path / "epoch_003.keras").write_bytes(b"kept")
    AtomicCheckpoint(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["epoch_003.keras"]
    assert f"removed 2 unfinished checkpoint file(s) in {tmp_path}" in detectlab_log.messages


def test_resume_with_a_new_lr_trains_at_it_and_says_so(tmp_path, shapes_dir, tiny_cfg, detectlab_log):
    (tmp_path / "shapes").symlink_to(shapes_dir)
    common = ("train.steps_per_epoch=1", "eval.after_training=false")
    train(tiny_cfg("train.epochs=1", "train.lr=0.003", *common), tmp_path)
    resumed = train(tiny_cfg("train.epochs=2", "train.lr=0.02", *common), tmp_path, resume=True)
    assert float(keras.ops.convert_to_numpy(resumed.model.optimizer.learning_rate)) == pytest.approx(0.02)
    assert resumed.history["learning_rate"] == pytest.approx([0.02])
    assert "learning rate changed on resume: 0.02 (the run had 0.003)" in detectlab_log.messages
