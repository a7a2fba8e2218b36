import pytest

import detectlab
from detectlab.registry import Registry, RegistryError


def test_builtins_registered_on_import():
    assert {"darknet53", "darknet_tiny"} <= set(detectlab.BACKBONES.names())
    assert {"yolo_xy_loss", "yolo_wh_loss", "yolo_confidence_loss", "yolo_class_loss"} <= set(detectlab.LOSSES.names())
    assert "yolov3" in detectlab.MODELS
    assert "coco" in detectlab.DATASET_FORMATS


def test_duplicate_and_unknown_names_are_errors_listing_known_ones():
    reg = Registry("widget")
    reg.register("alpha", object())

    @reg.register("beta")
    def beta():
        return 1

    assert reg.get("beta") is beta
    with pytest.raises(RegistryError, match="widget 'alpha' is already registered"):
        reg.register("alpha", object())
    with pytest.raises(RegistryError) as err:
        reg.get("alpah")
    assert "did you mean 'alpha'" in str(err.value)
    assert "known: alpha, beta" in str(err.value)


def test_losses_are_keras_serialisable_by_name():
    import keras

    fn = keras.saving.get_registered_object("detectlab>yolo_wh_loss")
    assert fn is detectlab.LOSSES.get("yolo_wh_loss")


def test_loss_weights_are_chosen_by_registered_name():
    from detectlab.errors import ConfigError
    from detectlab.models.faster_rcnn import FasterRCNN
    from detectlab.models.yolov3 import YoloV3

    weights = YoloV3.resolve_loss_weights({"yolo_wh_loss": 2})
    assert weights == {"yolo_xy_loss": 1.0, "yolo_wh_loss": 2.0, "yolo_confidence_loss": 1.0, "yolo_class_loss": 1.0}
    with pytest.raises(ConfigError, match="loss.weights: unknown loss 'yolo_wh_los' \\(did you mean 'yolo_wh_loss'"):
        YoloV3.resolve_loss_weights({"yolo_wh_los": 2})
    with pytest.raises(ConfigError, match="loss.weights.rpn_loss_cls: not a loss of YoloV3"):
        YoloV3.resolve_loss_weights({"rpn_loss_cls": 2})
    with pytest.raises(ConfigError, match="loss.weights.class_loss_cls: expected a number >= 0"):
        FasterRCNN.resolve_loss_weights({"class_loss_cls": -1})
