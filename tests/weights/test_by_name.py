import numpy as np
import pytest

from detectlab.errors import WeightsError
from detectlab.registry import MODELS
from detectlab.weights.by_name import read_h5, save_h5
from detectlab.weights.formats import load_weights


def build(tiny_cfg, classes=3):
    return MODELS.get("yolov3").build(tiny_cfg(), classes, None)


def test_h5_round_trip_and_keras_checkpoint(tiny_cfg, tmp_path):
    a, b = build(tiny_cfg), build(tiny_cfg)
    save_h5(a, tmp_path / "w.h5")
    assert "darknet_conv_000" in read_h5(tmp_path / "w.h5")
    report = load_weights(b, tmp_path / "w.h5")
    assert not report.missing and not report.excluded
    for x, y in zip(a.get_weights(), b.get_weights()):
        np.testing.assert_array_equal(x, y)
    c = build(tiny_cfg)
    a.save(tmp_path / "a.keras")
    load_weights(c, tmp_path / "a.keras")
    np.testing.assert_array_equal(c.get_layer("yolo_output_1").get_weights()[0], a.get_layer("yolo_output_1").get_weights()[0])


def test_class_count_mismatch_names_the_layer_and_exclusion_fixes_it(tiny_cfg, tmp_path):
    save_h5(build(tiny_cfg, classes=80), tmp_path / "coco.h5")
    target = build(tiny_cfg, classes=3)
    with pytest.raises(WeightsError, match=r"layer 'yolo_output_0' has shapes .* in the file but .* in the model"):
        load_weights(target, tmp_path / "coco.h5")
    report = load_weights(target, tmp_path / "coco.h5", exclude=r"yolo_output_.*")
    assert report.excluded == ["yolo_output_0", "yolo_output_1"]


def test_unusable_files(tiny_cfg, tmp_path):
    with pytest.raises(WeightsError, match="weights file not found"):
        load_weights(build(tiny_cfg), tmp_path / "none.h5")
    (tmp_path / "x.h5").write_bytes(b"junk")
    with pytest.raises(WeightsError, match="not a readable HDF5 file"):
        load_weights(build(tiny_cfg), tmp_path / "x.h5")
    (tmp_path / "x.bin").write_bytes(b"junk")
    with pytest.raises(WeightsError, match="unknown weights format"):
        load_weights(build(tiny_cfg), tmp_path / "x.bin")
