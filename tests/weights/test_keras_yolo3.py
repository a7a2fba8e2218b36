"""keras-yolo3 ``.h5`` files (Keras 2 HDF5, auto-named layers) load by structure.

The fixtures are written with h5py in keras-yolo3's layout: ``convert.py``'s whole model
(root ``model_config`` attribute + ``model_weights`` group) and ``train.py``'s weights only
(root ``layer_names``; per layer a group with a ``weight_names`` attribute and datasets
``conv2d_1/kernel:0`` ...), layers auto-named in creation order, listed in Keras 2's
topological order (the output convolutions last). Values are checked against the numpy
forward pass of :mod:`tests.weights.darknet_reference` with Keras' batch norm.
"""

from __future__ import annotations

import h5py
import numpy as np
import pytest

from detectlab.errors import WeightsError
from detectlab.registry import MODELS
from detectlab.weights.formats import load_weights
from detectlab.weights.darknet import darknet_convolutions
from tests.conftest import INSTANT, tool
from tests.weights.darknet_reference import darknet_forward, relative, yolov3_cfg, yolov3_tiny_cfg
from tests.weights.keras2_h5 import write_keras2_h5

RECIPES = {"tiny": "yolov3_tiny_instant.yaml", "yolov3": "yolov3_darknet53_instant.yaml"}


def sections_for(cfg, kind, classes):
    outputs = len(cfg.model.anchor_masks[0]) * (5 + classes)
    return yolov3_tiny_cfg(cfg.model.width, outputs) if kind == "tiny" else yolov3_cfg(cfg.model.width, cfg.model.darknet_blocks, outputs)


def keras2_layers(sections, params, first: int = 1):
    """keras-yolo3's layers in creation order: ``[(name, [(weight name, array)])]``.

    ``first`` 1 is standalone Keras 2 naming (``conv2d_1``), 0 tf.keras' (``conv2d``)."""
    counters: dict[str, int] = {}

    def auto(kind):
        n = counters.get(kind, first)
        counters[kind] = n + 1
        return kind if n == 0 else f"{kind}_{n}"

    layers, convs = [(auto("input"), [])], iter(params)
    for kind, o in sections:
        if kind == "convolutional":
            p = next(convs)
            if int(o["stride"]) == 2:
                layers.append((auto("zero_padding2d"), []))
            name = auto("conv2d")
            kernel = p[-1].transpose(2, 3, 1, 0).astype(np.float32)  # (out, in, h, w) -> (h, w, in, out)
            if int(o["batch_normalize"]):
                beta, gamma, mean, var, _ = (a.astype(np.float32) for a in p)
                layers.append((name, [(f"{name}/kernel:0", kernel)]))
                bn = auto("batch_normalization")
                layers.append((bn, [(f"{bn}/{w}:0", v) for w, v in zip(("gamma", "beta", "moving_mean", "moving_variance"), (gamma, beta, mean, var))]))
                layers.append((auto("leaky_re_lu"), []))
            else:
                layers.append((name, [(f"{name}/kernel:0", kernel), (f"{name}/bias:0", p[0].astype(np.float32))]))
        elif kind in ("shortcut", "route", "upsample", "maxpool"):
            if kind != "route" or "," in o["layers"]:
                layers.append((auto({"shortcut": "add", "route": "concatenate", "upsample": "up_sampling2d", "maxpool": "max_pooling2d"}[kind]), []))
    return layers


def fixture(tiny_cfg, tmp_path, kind, file_classes=3, whole_model=False, first=1, name="trained_weights_final.h5"):
    cfg = tiny_cfg("model.image_size=128", recipe=RECIPES[kind])
    sections = sections_for(cfg, kind, file_classes)
    rng = np.random.default_rng(1)
    image = rng.uniform(0, 1, (128, 128, 3))
    reference, params = darknet_forward(sections, image, rng)
    reference, _ = darknet_forward(sections, image, rng, params, keras_bn=True)  # keras-yolo3 kept Keras' BN
    path = tmp_path / name
    write_keras2_h5(path, keras2_layers(sections, params, first), whole_model)
    return cfg, path, image, reference


@pytest.mark.parametrize("kind,whole_model,first", [("tiny", False, 1), ("yolov3", True, 1), ("tiny", True, 0)])
def test_keras_yolo3_file_loads_by_structure_and_gives_its_outputs(kind, whole_model, first, tiny_cfg, tmp_path):
    cfg, path, image, reference = fixture(tiny_cfg, tmp_path, kind, whole_model=whole_model, first=first)
    with h5py.File(path) as f:  # the layout under test
        group = f["model_weights"] if whole_model else f
        assert ("model_config" in f.attrs) == whole_model
        assert "conv2d_1" in group.attrs["layer_names"].astype(str)
    model = MODELS.get("yolov3").build(cfg, 3, None)
    report = load_weights(model, path)
    assert len(report.loaded) == len(darknet_convolutions(model)) == (13 if kind == "tiny" else 39) and not report.excluded and not report.missing
    with h5py.File(path) as f:
        group = f["model_weights"] if whole_model else f
        first_conv = "conv2d" if first == 0 else "conv2d_1"
        np.testing.assert_array_equal(model.get_layer("darknet_conv_000").kernel.numpy(), group[first_conv][f"{first_conv}/kernel:0"][()])
    ours = model.predict((image[None] * 255).astype(np.float32), verbose=0)
    for level, (a, b) in enumerate(zip(ours, reference)):
        assert relative(a[0], b) < 1e-4, f"yolo_output_{level}: {relative(a[0], b):.2e}"


def test_users_own_class_count_loads_all_but_the_outputs(tiny_cfg, tmp_path):
    from detectlab.weights.keras_yolo3 import keras_yolo3_class_count

    cfg, path, _, _ = fixture(tiny_cfg, tmp_path, "yolov3", file_classes=80)
    assert keras_yolo3_class_count(path) == 80  # what predict / evaluate build for the file alone
    model = MODELS.get("yolov3").build(cfg, 3, None)
    before = model.get_layer("yolo_output_1").kernel.numpy().copy()
    report = load_weights(model, path)
    assert sorted(report.excluded) == ["yolo_output_0", "yolo_output_1", "yolo_output_2"]
    assert len(report.loaded) == len(darknet_convolutions(model)) - 3
    np.testing.assert_array_equal(model.get_layer("yolo_output_1").kernel.numpy(), before)
    with h5py.File(path) as f:  # the last body convolution came from the file
        last_body = [c for c in report.loaded if c.startswith("darknet_")][-1]
        n = int(last_body[-3:]) + 1
        np.testing.assert_array_equal(model.get_layer(last_body).kernel.numpy(), f[f"conv2d_{n}"][f"conv2d_{n}/kernel:0"][()])


def test_wrong_keras_yolo3_files_fail_in_one_line(tiny_cfg, tmp_path):
    _, tiny_file, _, _ = fixture(tiny_cfg, tmp_path, "tiny", name="tiny.h5")
    yolov3 = MODELS.get("yolov3").build(tiny_cfg(recipe=RECIPES["yolov3"]), 3, None)
    with pytest.raises(WeightsError, match=r"tiny.h5: holds 13 convolutions and 11 batch norms \(conv2d_1 \.\. conv2d_13\); this model has") as err:
        load_weights(yolov3, tiny_file)
    assert "\n" not in str(err.value)
    wider = MODELS.get("yolov3").build(tiny_cfg("model.width=0.25", recipe=RECIPES["tiny"]), 3, None)
    with pytest.raises(WeightsError, match=r"conv2d_1 \(convolution 1 in creation order\) has shapes \[\(3, 3, 3, 2\)\] in the file but darknet_conv_000 needs \[\(3, 3, 3, 4\)\]") as err:
        load_weights(wider, tiny_file)
    assert "\n" not in str(err.value)


def test_convert_tool_takes_keras_yolo3_files_and_help_names_every_format(tiny_cfg, tmp_path):
    _, path, _, _ = fixture(tiny_cfg, tmp_path, "tiny")
    out = tool("tools/convert_darknet.py", "--config", INSTANT / RECIPES["tiny"], "--set", "model.image_size=128",
               "--num-classes", 3, "--weights", path, "--out", tmp_path / "ours.h5")
    assert out.returncode == 0, out.stderr[-2000:]
    assert "loaded 13 layers" in out.stdout and (tmp_path / "ours.h5").is_file()
    for script, names in (("tools/train.py", ("darknet53.conv.74", "yolo.h5", "trained_weights_*.h5", "model_frcnn.hdf5", "mask_rcnn_*.h5", ".keras")),
                          ("tools/convert_darknet.py", ("darknet53.conv.74", "yolo.h5", "trained_weights_*.h5", "yolov3-tiny.weights"))):
        text = " ".join(tool(script, "--help").stdout.split())
        assert all(n in text for n in names), (script, [n for n in names if n not in text])
