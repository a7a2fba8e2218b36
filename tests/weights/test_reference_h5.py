"""keras-frcnn ``model_frcnn.hdf5`` (VGG16, ResNet-50) and matterport ``mask_rcnn_*.h5``
load by name.

The fixtures are written with h5py in each code base's layout (Keras 2 ``save_weights``):
keras-frcnn's ``model_all`` (inputs, base network, ``rpn_conv1`` / ``rpn_out_class`` /
``rpn_out_regress``, ``roi_pooling_conv_1``, the classifier's TimeDistributed wrappers:
auto-named around VGG's ``fc1``/``fc2``, named ``res5a_branch2a`` ... for ResNet, its
``FixedBatchNormalization`` weights ``bn_conv1_gamma ... bn_conv1_running_std``), and
matterport's ``keras_model`` (Keras batch-norm names, the shared RPN saved as one nested
``rpn_model`` group, TimeDistributed heads named ``mrcnn_*``, COCO's 81 classes). Shapes come
from our instant models; every loaded value is compared with the file's.
"""

from __future__ import annotations

import h5py
import numpy as np
import pytest

from detectlab.config import load_config
from detectlab.errors import WeightsError
from detectlab.registry import MODELS
from detectlab.utils import named_layers
from detectlab.weights.formats import load_weights
from tests.conftest import INSTANT
from tests.weights.keras2_h5 import write_keras2_h5

BN_KERAS = ("gamma", "beta", "moving_mean", "moving_variance")
BN_FRCNN = ("gamma", "beta", "running_mean", "running_std")  # keras-frcnn's FixedBatchNormalization


def build(recipe, classes=3):
    cfg = load_config(INSTANT / recipe, [])
    return MODELS.get(cfg.model.family).build(cfg, classes, None)


def _random(shapes, rng):
    return [rng.normal(0, 1, s).astype(np.float32) if len(s) > 1 else rng.uniform(0.5, 1.5, s).astype(np.float32) for s in shapes]


def _weights(name, arrays, frcnn_bn=False, group=None):
    """``[(weight name, array)]`` as Keras 2 names a layer's variables."""
    if len(arrays) == 4 and all(a.ndim == 1 for a in arrays):
        names = [f"{name}/{name}_{w}:0" for w in BN_FRCNN] if frcnn_bn else [f"{name}/{w}:0" for w in BN_KERAS]
    else:
        names = [f"{group or name}/{w}:0" for w in ("kernel", "bias")[: len(arrays)]]
    return list(zip(names, arrays))


def keras_frcnn_layers(model, rng):
    """keras-frcnn's ``model_all`` layer groups, in its creation order, with random values."""
    layers = [("input_1", []), ("input_2", [])]
    if "block1_conv1" in {layer.name for layer in named_layers(model)}:  # VGG16
        for layer in named_layers(model):
            if layer.name.startswith("block") and layer.weights:
                layers += [(layer.name, _weights(layer.name, _random([w.shape for w in layer.weights], rng)))]
        head = []
        wrappers = iter(range(1, 6))  # flatten, fc1, dropout, fc2, dropout: auto-named wrappers
        for fc in ("flatten", "fc1", "dropout", "fc2", "dropout"):
            name = f"time_distributed_{next(wrappers)}"
            arrays = _random([w.shape for w in model.get_layer(fc).weights], rng) if fc.startswith("fc") else []
            head.append((name, _weights(name, arrays) if arrays else []))
    else:  # ResNet-50
        layers.append(("zero_padding2d_1", []))
        for layer in named_layers(model):
            if layer.weights and (layer.name.startswith(("conv1", "bn_conv1", "res", "bn"))):
                layers.append((layer.name, _weights(layer.name, _random([w.shape for w in layer.weights], rng), frcnn_bn=True)))
        head = [("avg_pool", []), ("time_distributed_1", [])]
    layers += [(n, _weights(n, _random([w.shape for w in model.get_layer(n).weights], rng))) for n in ("rpn_conv1", "rpn_out_class", "rpn_out_regress")]
    layers.append(("roi_pooling_conv_1", []))
    k = model.num_classes + 1
    layers += head
    layers += [(n, _weights(n, _random([w.shape for w in model.get_layer(n).weights], rng))) for n in (f"dense_class_{k}", f"dense_regress_{k}")]
    return layers


def file_values(path):
    """``{group: {weight name: array}}`` straight from the HDF5 file."""
    with h5py.File(path) as f:
        return {g: {w.decode(): f[g][w.decode()][()] for w in f[g].attrs["weight_names"]} for g in f.attrs["layer_names"].astype(str)}


@pytest.mark.parametrize("recipe", ["faster_rcnn_vgg16_instant.yaml", "faster_rcnn_resnet50_instant.yaml"])
def test_keras_frcnn_model_file_loads_by_name(recipe, tmp_path):
    rng = np.random.default_rng(0)
    path = tmp_path / "model_frcnn.hdf5"
    write_keras2_h5(path, keras_frcnn_layers(build(recipe), rng), whole_model=False)
    model = build(recipe)
    report = load_weights(model, path)
    assert not report.missing and not report.excluded, report.summary()
    values = file_values(path)
    if "vgg16" in recipe:
        assert values["time_distributed_2"] and values["time_distributed_4"]  # fc1, fc2 under auto names
        np.testing.assert_array_equal(model.get_layer("fc1").kernel.numpy(), values["time_distributed_2"]["time_distributed_2/kernel:0"])
        np.testing.assert_array_equal(model.get_layer("fc2").bias.numpy(), values["time_distributed_4"]["time_distributed_4/bias:0"])
        compared = [n for n in values if n.startswith(("block", "rpn", "dense"))]
    else:
        bn = model.get_layer("bn5a_branch2a")  # FixedBatchNormalization: running_std is the variance
        np.testing.assert_array_equal(bn.moving_variance.numpy(), values["bn5a_branch2a"]["bn5a_branch2a/bn5a_branch2a_running_std:0"])
        np.testing.assert_array_equal(bn.gamma.numpy(), values["bn5a_branch2a"]["bn5a_branch2a/bn5a_branch2a_gamma:0"])
        compared = [n for n in values if values[n] and not n.startswith("bn")]
    for name in compared:
        for got, (_, want) in zip(model.get_layer(name).get_weights(), values[name].items()):
            np.testing.assert_array_equal(got, want)
    # a keras-frcnn file of another class count (VOC: 21 with background) leaves the class layers out
    other = build(recipe, classes=20)
    write_keras2_h5(tmp_path / "voc.hdf5", keras_frcnn_layers(other, rng), whole_model=False)
    report = load_weights(build(recipe), tmp_path / "voc.hdf5")
    assert report.missing == ["dense_class_4", "dense_regress_4"] and report.unused == ["dense_class_21", "dense_regress_21"]


def matterport_layers(model, rng, classes=81):
    """matterport's ``keras_model.save_weights`` groups with COCO's 81-class outputs."""
    layers = [("input_image", []), ("input_image_meta", []), ("zero_padding2d_1", [])]
    rpn = []
    outputs = {"mrcnn_class_logits": classes, "mrcnn_bbox_fc": 4 * classes, "mrcnn_mask": classes}
    for layer in named_layers(model):
        if not layer.weights:
            continue
        shapes = [tuple(w.shape) for w in layer.weights]
        if layer.name in outputs:
            shapes = [s[:-1] + (outputs[layer.name],) for s in shapes]
        arrays = _random(shapes, rng)
        if layer.name.startswith("rpn_"):
            rpn += _weights(layer.name, arrays)  # one nested model: rpn_model/rpn_conv_shared/kernel:0 ...
        else:
            layers.append((layer.name, _weights(layer.name, arrays)))
    return layers + [("rpn_model", rpn), ("mrcnn_detection", [])]


def test_matterport_coco_file_loads_by_name_excluding_the_class_layers(tmp_path):
    rng = np.random.default_rng(0)
    path = tmp_path / "mask_rcnn_coco.h5"
    write_keras2_h5(path, matterport_layers(build("mask_rcnn_r50_instant.yaml"), rng), whole_model=False)
    values = file_values(path)
    assert list(values["rpn_model"]) == [f"{n}/{w}:0" for n in ("rpn_conv_shared", "rpn_class_raw", "rpn_bbox_pred") for w in ("kernel", "bias")]
    model = build("mask_rcnn_r50_instant.yaml")
    with pytest.raises(WeightsError, match=r"layer 'mrcnn_.*' has shapes .*--exclude '") as err:
        load_weights(model, path)
    assert "\n" not in str(err.value) and all(n in str(err.value) for n in ("mrcnn_class_logits", "mrcnn_bbox_fc", "mrcnn_mask"))
    report = load_weights(model, path, exclude="mrcnn_class_logits|mrcnn_bbox_fc|mrcnn_mask")
    assert sorted(report.excluded) == ["mrcnn_bbox_fc", "mrcnn_class_logits", "mrcnn_mask"] and not report.missing
    np.testing.assert_array_equal(model.get_layer("rpn_conv_shared").kernel.numpy(), values["rpn_model"]["rpn_conv_shared/kernel:0"])
    bn = model.get_layer("mrcnn_class_bn1")
    np.testing.assert_array_equal(bn.moving_variance.numpy(), values["mrcnn_class_bn1"]["mrcnn_class_bn1/moving_variance:0"])
    for name in ("conv1", "res5a_branch2b", "fpn_p2", "mrcnn_class_conv1", "mrcnn_mask_deconv"):
        for got, want in zip(model.get_layer(name).get_weights(), values[name].values()):
            np.testing.assert_array_equal(got, want)
