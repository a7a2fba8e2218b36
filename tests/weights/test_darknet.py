"""Darknet .weights files written in Darknet's own layout load layer by layer."""

import numpy as np
import pytest

from detectlab.errors import WeightsError
from detectlab.registry import MODELS
from detectlab.weights.darknet import darknet_convolutions, load_darknet_weights, read_darknet, write_darknet
from detectlab.weights.batch_norm_fold import keras_gamma_to_darknet


def model(tiny_cfg, classes=3, recipe="yolov3_darknet53_instant.yaml"):
    return MODELS.get("yolov3").build(tiny_cfg(recipe=recipe), classes, None)


def fill_distinct(m):
    """Give every conv / BN weight a value that identifies its layer and position."""
    for k, (conv, bn) in enumerate(darknet_convolutions(m)):
        conv.set_weights([np.full(w.shape, k + 1, np.float32) + np.arange(w.size).reshape(w.shape) * 1e-4 for w in conv.get_weights()])
        if bn is not None:
            bn.set_weights([np.full(w.shape, 1000 * (k + 1) + j, np.float32) for j, w in enumerate(bn.get_weights())])


def assert_same(a, b, layers):
    for (ca, ba), (cb, bb) in zip(darknet_convolutions(a)[:layers], darknet_convolutions(b)[:layers]):
        for x, y in zip(ca.get_weights(), cb.get_weights()):
            np.testing.assert_array_equal(x, y)
        if ba is not None:  # gamma goes through Darknet's epsilon and back: float rounding
            for x, y in zip(ba.get_weights(), bb.get_weights()):
                np.testing.assert_allclose(x, y, rtol=1e-6)


def test_cfg_order_of_the_darknet53_model(tiny_cfg):
    names = [c.name for c, _ in darknet_convolutions(model(tiny_cfg))]
    # body: 1 + 5 stages x (downsample + one 2-conv block); head: 3 x (5 + 3x3 + output) + 2 1x1 before upsampling
    assert len(names) == (1 + 5 * 3) + (3 * 7 + 2)
    assert names[:2] == ["darknet_conv_000", "darknet_conv_001"]
    i = names.index("yolo_output_0")
    assert names[i - 1] == "yolo_conv_%03d" % (int(names[i - 2][-3:]) + 1) and names[i + 1].startswith("yolo_conv_")


def test_whole_network_round_trip(tiny_cfg, tmp_path):
    source, target = model(tiny_cfg), model(tiny_cfg)
    fill_distinct(source)
    path = tmp_path / "yolo.weights"
    write_darknet(source, path)
    (major, minor, _, _), data = read_darknet(path)
    assert (major, minor) == (0, 2) and data.dtype == np.float32
    report = load_darknet_weights(target, path)
    assert len(report.loaded) == len(darknet_convolutions(target)) and not report.missing
    assert_same(source, target, None)
    # the file itself is in Darknet's order: beta, gamma, mean, variance, then the (out, in, h, w) kernel
    n = source.get_layer("darknet_conv_000").kernel.shape[-1]
    bn = source.get_layer("darknet_bn_000")
    gamma, beta, mean, var = bn.get_weights()
    darknet_gamma = keras_gamma_to_darknet(gamma, var, bn.epsilon)  # Darknet's epsilon on the std
    np.testing.assert_array_equal(data[: 4 * n].reshape(4, n), np.stack([beta, darknet_gamma, mean, var]))
    np.testing.assert_allclose(darknet_gamma, gamma * (np.sqrt(var) + 1e-6) / np.sqrt(var + bn.epsilon), rtol=1e-6)
    kernel = source.get_layer("darknet_conv_000").get_weights()[0]  # (h, w, in, out)
    np.testing.assert_array_equal(data[4 * n : 4 * n + kernel.size], kernel.transpose(3, 2, 0, 1).reshape(-1))


def test_backbone_only_file_and_old_header(tiny_cfg, tmp_path):
    source, target = model(tiny_cfg), model(tiny_cfg)
    fill_distinct(source)
    path = tmp_path / "darknet53.conv.74"
    write_darknet(source, path, body_only=True, version=(0, 1, 0))  # 32-bit 'seen'
    before = target.get_layer("yolo_output_0").get_weights()[0].copy()
    report = load_darknet_weights(target, path)
    body = sum(1 for c, _ in darknet_convolutions(target) if c.name.startswith("darknet_"))
    assert len(report.loaded) == body and report.missing[0].startswith("yolo_")
    assert_same(source, target, body)
    np.testing.assert_array_equal(target.get_layer("yolo_output_0").get_weights()[0], before)


def test_file_for_another_class_count_loads_all_but_outputs(tiny_cfg, tmp_path):
    source, target = model(tiny_cfg, classes=80), model(tiny_cfg, classes=3)
    fill_distinct(source)
    path = tmp_path / "coco.weights"
    write_darknet(source, path)
    report = load_darknet_weights(target, path)
    assert sorted(report.excluded) == ["yolo_output_0", "yolo_output_1", "yolo_output_2"]
    conv = target.get_layer("yolo_conv_%s" % report.loaded[-1][-3:]) if report.loaded[-1].startswith("yolo_conv") else None
    assert conv is not None
    np.testing.assert_array_equal(conv.get_weights()[0], source.get_layer(conv.name).get_weights()[0])


def test_wrong_file_is_a_clear_error(tiny_cfg, tmp_path):
    path = tmp_path / "x.weights"
    path.write_bytes(np.array([0, 2, 0], np.int32).tobytes() + np.zeros(1, np.int64).tobytes() + np.zeros(10, np.float32).tobytes())
    with pytest.raises(WeightsError, match=r"holds 10 parameters; this model needs \d+ \(whole network\) or \d+ \(backbone only\)"):
        load_darknet_weights(model(tiny_cfg), path)


def test_backbone_file_named_like_darknet53_conv_74_loads_through_load_weights(tiny_cfg, tmp_path):
    from detectlab.weights.formats import load_weights

    source, target = model(tiny_cfg), model(tiny_cfg)
    fill_distinct(source)
    write_darknet(source, tmp_path / "darknet53.conv.74", body_only=True)
    report = load_weights(target, tmp_path / "darknet53.conv.74")
    assert report.loaded[0] == "darknet_conv_000" and report.missing[0].startswith("yolo_")
