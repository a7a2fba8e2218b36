"""``model.backbone_weights: imagenet``: Keras' application files give Keras' features.

The files are written here the way Keras published them (Keras 2 by-name HDF5, the
application's layer names) from ``keras.applications`` models built with ``weights=None``
(random kernels, biases and batch-norm statistics with small variances, where the
epsilons differ), under the published file name in a temporary Keras cache.
"""

from __future__ import annotations

import keras
import numpy as np
import pytest

from detectlab.backbones.resnet import STAGE_BLOCKS, resnet_stage
from detectlab.config import load_config
from detectlab.errors import WeightsError
from detectlab.registry import BACKBONES
from detectlab.utils import named_layers
from detectlab.weights import imagenet
from detectlab.weights.formats import load_weights
from detectlab.weights.formats import load_backbone_weights
from detectlab.weights.imagenet import IMAGENET_FILES, load_imagenet_backbone
from tests.conftest import INSTANT
from tests.weights.keras2_h5 import write_keras2_h5


def publish(app, backbone, cache, rng):
    """Randomise ``app``'s weights and save them as Keras' published file of ``backbone``."""
    layers = []
    for layer in app.layers:
        names = [w.path.split("/")[-1] for w in layer.weights]
        shapes = [tuple(w.shape) for w in layer.weights]
        if names == ["gamma", "beta", "moving_mean", "moving_variance"]:
            # small variances (where the epsilons differ), gain gamma / sqrt(var) about 1
            var = rng.uniform(1e-3, 2e-2, shapes[3])
            values = [np.sqrt(var) * rng.uniform(0.5, 1.5, shapes[0]), rng.normal(0, 0.05, shapes[1]), rng.normal(0, 0.05, shapes[2]), var]
        else:  # kernel (He), bias
            values = [rng.normal(0, np.sqrt(2.0 / np.prod(s[:-1])), s) if len(s) > 1 else rng.normal(0, 0.05, s) for s in shapes]
        values = [v.astype(np.float32) for v in values]
        layer.set_weights(values)
        layers.append((layer.name, [(f"{layer.name}/{w.path.split('/')[-1]}:0", v) for w, v in zip(layer.weights, values)]))
    (cache / "models").mkdir(parents=True, exist_ok=True)
    write_keras2_h5(cache / "models" / IMAGENET_FILES[backbone][0], layers, whole_model=False, outputs_last=False)


def assert_close(ours, theirs):
    ours, theirs = np.asarray(ours), np.asarray(theirs)
    assert ours.shape == theirs.shape
    assert np.abs(theirs).max() > 1e-2
    np.testing.assert_allclose(ours, theirs, rtol=0, atol=1e-5 * np.abs(theirs).max())


def test_vgg16_imagenet_features_equal_keras(tmp_path, monkeypatch):
    monkeypatch.setenv("KERAS_HOME", str(tmp_path))
    app = keras.applications.VGG16(include_top=False, weights=None, input_shape=(32, 32, 3))
    publish(app, "vgg16", tmp_path, np.random.default_rng(0))
    images = keras.Input((32, 32, 3))
    features = BACKBONES.get("vgg16")(images)
    ours = keras.Model(images, [features["C4"], features["C5"]])
    report = load_imagenet_backbone(ours, "vgg16")
    assert len(report.loaded) == 13 and not report.missing
    x = np.random.default_rng(1).uniform(-120, 120, (2, 32, 32, 3)).astype(np.float32)
    theirs = keras.Model(app.input, [app.get_layer("block5_conv3").output, app.get_layer("block5_pool").output])
    for a, b in zip(ours(x), theirs(x)):
        assert_close(a, b)


@pytest.mark.parametrize("depth", [50, pytest.param(101, marks=pytest.mark.slow)])
def test_resnet_imagenet_features_equal_keras(depth, tmp_path, monkeypatch):
    monkeypatch.setenv("KERAS_HOME", str(tmp_path))
    backbone = f"resnet{depth}"
    app = getattr(keras.applications, f"ResNet{depth}")(include_top=False, weights=None, input_shape=(64, 64, 3))
    publish(app, backbone, tmp_path, np.random.default_rng(0))
    rng = np.random.default_rng(1)
    x = rng.uniform(-120, 120, (2, 64, 64, 3)).astype(np.float32)

    # the stem (conv1 + bn_conv1 + relu), through the backbone as the models build it
    images = keras.Input((64, 64, 3))
    features = BACKBONES.get(backbone)(images)
    full = keras.Model(images, features["C5"])
    recipe = load_config(INSTANT / "faster_rcnn_resnet50_instant.yaml", [f"model.backbone={backbone}", "model.backbone_weights=imagenet"])
    report = load_backbone_weights(full, recipe.model)  # what the runner does with the recipe
    assert not report.missing and report.loaded[:2] == ["conv1", "bn_conv1"]
    stem = keras.Model(images, full.get_layer("conv1_relu").output)
    assert_close(stem(x), keras.Model(app.input, app.get_layer("conv1_relu").output)(x))

    # stages 2-5 from the same pooled map (our stem pools with 'same' padding, Keras' pads first)
    pooled = keras.Input((16, 16, 64))
    y, outputs = pooled, []
    for stage, blocks in zip((2, 3, 4, 5), STAGE_BLOCKS[depth]):
        y = resnet_stage(y, stage, blocks, strides=1 if stage == 2 else 2)
        outputs.append(y)
    stages = keras.Model(pooled, outputs)
    load_imagenet_backbone(stages, backbone)
    names = [f"conv{s}_block{b}_out" for s, b in zip((2, 3, 4, 5), STAGE_BLOCKS[depth])]
    theirs = keras.Model(app.get_layer("pool1_pool").output, [app.get_layer(n).output for n in names])
    p = rng.uniform(0, 3, (2, 16, 16, 64)).astype(np.float32)
    for a, b in zip(stages(p), theirs(p)):
        assert_close(a, b)
    # the epsilon fold is what makes them equal: Keras' 1.001e-5 -> our 1e-3
    bn = {layer.name: layer for layer in named_layers(full)}["bn2a_branch2a"]
    gamma, var = app.get_layer("conv2_block1_1_bn").gamma.numpy(), app.get_layer("conv2_block1_1_bn").moving_variance.numpy()
    np.testing.assert_allclose(bn.gamma.numpy(), gamma * np.sqrt(var + 1e-3) / np.sqrt(var + 1.001e-5), rtol=1e-6)
    assert np.abs(bn.gamma.numpy() / gamma - 1).max() > 0.01
    # the same file given as --weights is recognised by its names
    bn.set_weights([np.zeros_like(w) for w in bn.get_weights()])
    load_weights(full, tmp_path / "models" / IMAGENET_FILES[backbone][0])
    np.testing.assert_allclose(bn.gamma.numpy(), gamma * np.sqrt(var + 1e-3) / np.sqrt(var + 1.001e-5), rtol=1e-6)


def test_imagenet_file_offline_or_unknown_is_one_line(tmp_path, monkeypatch):
    monkeypatch.setenv("KERAS_HOME", str(tmp_path))
    monkeypatch.setattr(imagenet, "BASE_URL", "http://127.0.0.1:9/")  # nothing listens there: offline
    with pytest.raises(WeightsError, match=rf"resnet50_weights_tf_dim_ordering_tf_kernels_notop.h5: not in the Keras cache {tmp_path}/models and cannot be downloaded .*copy the file there") as err:
        imagenet.imagenet_file("resnet50")
    assert "\n" not in str(err.value)
    with pytest.raises(WeightsError, match=r"ImageNet weights exist for vgg16, resnet50, resnet101, not darknet53"):
        imagenet.imagenet_file("darknet53")


def test_runner_loads_model_backbone_weights_before_training(tmp_path, shapes_dir):
    from detectlab.registry import MODELS
    from detectlab.training.runner import train
    from detectlab.weights.by_name import save_h5

    (tmp_path / "shapes").symlink_to(shapes_dir)
    recipe = INSTANT / "faster_rcnn_vgg16_instant.yaml"
    keras.utils.set_random_seed(7)
    source = MODELS.get("faster_rcnn").build(load_config(recipe, []), 3, None)
    save_h5(source, tmp_path / "backbone.h5")
    cfg = load_config(recipe, [f"model.backbone_weights={tmp_path / 'backbone.h5'}", "train.layers=heads", "train.epochs=1",
                               "train.steps_per_epoch=1", "eval.after_training=false", "data.val=null"])
    model = train(cfg, tmp_path / "run").model
    for name in ("block1_conv1", "block5_conv3"):  # frozen by 'heads': exactly the file's
        np.testing.assert_array_equal(model.get_layer(name).kernel.numpy(), source.get_layer(name).kernel.numpy())
