"""YOLOv3 (Darknet-53, three scales) and YOLOv3-tiny (two scales).

Input: ``(B, H, W, 3)`` RGB in ``[0, 255]`` (uint8 is fine), ``H, W`` multiples of 32.
Outputs: one raw tensor per scale, ``yolo_output_L`` of shape ``(B, H/s, W/s, A*(5+C))``
with ``s = 32 / 2**L``. Layer names: ``darknet_*`` (body) and ``yolo_*`` (head).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import keras
import numpy as np

from detectlab.backbones.darknet import DarknetLayers
from detectlab.config import Config, ModelConfig
from detectlab.data.yolo_targets import YoloTargetEncoder
from detectlab.heads.yolo import yolov3_head, yolov3_tiny_head
from detectlab.layers.nms import PerClassNMS
from detectlab.layers.yolo import YoloDecode
from detectlab.losses.yolo import YoloCriterion
from detectlab.models.base import DetectorModel, threshold_inputs
from detectlab.models.family import ModelFamily, model_kwargs
from detectlab.registry import BACKBONES, MODELS

# Reference anchors (w, h in pixels at 416) and which output uses which anchors.
YOLOV3_ANCHORS = [[10, 13], [16, 30], [33, 23], [30, 61], [62, 45], [59, 119], [116, 90], [156, 198], [373, 326]]
YOLOV3_MASKS = [[6, 7, 8], [3, 4, 5], [0, 1, 2]]
TINY_ANCHORS = [[10, 14], [23, 27], [37, 58], [81, 82], [135, 169], [344, 319]]
TINY_MASKS = [[3, 4, 5], [1, 2, 3]]  # as in the reference yolov3-tiny.cfg (anchor 3 shared)
HEADS = {"darknet53": yolov3_head, "darknet_tiny": yolov3_tiny_head}


@dataclass
class YoloConfig(ModelConfig):
    family: str = "yolov3"
    backbone: Literal["darknet53", "darknet_tiny"] = "darknet53"
    image_size: int = 416
    anchors: list[list[float]] = field(default_factory=lambda: [list(a) for a in YOLOV3_ANCHORS])
    anchor_masks: list[list[int]] = field(default_factory=lambda: [list(m) for m in YOLOV3_MASKS])
    ignore_thresh: float = 0.5  # the reference uses 0.7 for tiny
    width: float = 1.0  # channel multiplier (tests shrink it; 1.0 is the real network)
    darknet_blocks: list[int] = field(default_factory=lambda: [1, 2, 8, 8, 4])
    l2: float = 5e-4  # kernel L2 of every convolution (logged as l2_loss)


@keras.saving.register_keras_serializable(package="detectlab")
class YoloV3(DetectorModel):
    """YOLOv3 / YOLOv3-tiny; its loss is a :class:`YoloCriterion` of the recipe's terms."""

    CRITERION = YoloCriterion
    LAYER_PRESETS = {"all": ".*", "heads": r"yolo_.*", "outputs": r"yolo_output_.*"}

    CONFIG = YoloConfig

    def __init__(self, num_classes: int, loss_weights: dict | None = None, class_weights=None, class_names=None,
                 category_ids=None, loss_terms=None, label_smoothing: float = 0.0, **kwargs):
        """``kwargs``: any :class:`YoloConfig` field (its default otherwise), then
        ``keras.Model``'s own (``name``, ...). The input takes any size that is a multiple of
        32; ``image_size`` is the size it trains and predicts at."""
        m, kwargs = self.split_settings(kwargs)
        images = keras.Input((None, None, 3), name="images")
        x = keras.layers.Rescaling(1.0 / 255, name="image_scale")(images)
        builder = DarknetLayers(m.l2)
        body = BACKBONES.get(m.backbone)
        if m.backbone == "darknet53":
            features = body(x, builder, m.width, m.darknet_blocks)
        else:
            features = body(x, builder, m.width)
        outputs = HEADS[m.backbone](features, builder, [len(mask) for mask in m.anchor_masks], num_classes, m.width)
        super().__init__(inputs=images, outputs=outputs, **kwargs)
        self._init_settings(m, num_classes,
                            class_weights=None if class_weights is None else [float(w) for w in class_weights])
        self._init_classes(num_classes, class_names, category_ids)
        self._init_losses(YoloCriterion(m.anchors, m.anchor_masks, num_classes, m.ignore_thresh, class_weights,
                                        loss_terms, label_smoothing), loss_weights)

    def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None, training=True):
        return self.total_loss(self.criterion(x, y, y_pred))

    def set_class_weights(self, class_weight) -> None:
        """Per-class weights of ``yolo_class_loss``: a ``{class index: weight}`` dict
        (Keras' ``class_weight``; missing classes weigh 1) or a list of one per class."""
        weights = [1.0] * self.num_classes
        items = class_weight.items() if isinstance(class_weight, dict) else enumerate(class_weight)
        for k, w in items:
            if not 0 <= int(k) < self.num_classes:
                raise ValueError(f"class_weight: class index {k} outside 0..{self.num_classes - 1}")
            weights[int(k)] = float(w)
        self.criterion.class_weights = np.asarray(weights, np.float32)
        self.constructor_args["class_weights"] = weights
        self.train_function = self.test_function = None  # retrace with the new weights

    def inference_model(self, score_threshold: float, nms_threshold: float, max_detections: int,
                        threshold_input: bool = False) -> keras.Model:
        """images -> ``boxes (B, K, 4)`` y1 x1 y2 x2 normalised to the input, ``scores``,
        ``class_ids``, ``valid`` (see :class:`PerClassNMS`).
        With ``threshold_input`` the model takes ``[images, thresholds (B, 2)]`` (``[score, nms]``,
        row 0 used) and the two thresholds given here are unused (exported models)."""
        args = self.constructor_args
        raw = self.outputs if isinstance(self.outputs, list) else [self.outputs]
        boxes, scores = YoloDecode(args["anchors"], args["anchor_masks"], self.num_classes, name="yolo_decode")(raw)
        inputs, thresholds = threshold_inputs(self.inputs[0], threshold_input)
        outputs = PerClassNMS(max_detections, nms_threshold, score_threshold, name="nms")(boxes, scores, thresholds)
        names = ("boxes", "scores", "class_ids", "valid")
        return keras.Model(inputs, dict(zip(names, outputs)), name=f"{self.name}_inference")


def build_yolov3(cfg: Config, num_classes: int, class_weights=None, classes=None) -> YoloV3:
    """``classes``: the training data's ``(class names, category ids)``, saved with the model."""
    m: YoloConfig = cfg.model
    names, ids = classes or (None, None)
    return YoloV3(num_classes=num_classes, **model_kwargs(m), **YoloV3.loss_settings(cfg.loss), class_weights=class_weights,
                  class_names=names, category_ids=ids, name="yolov3" if m.backbone == "darknet53" else "yolov3_tiny")


def yolo_encoder(cfg: Config, num_classes: int) -> YoloTargetEncoder:
    m: YoloConfig = cfg.model
    return YoloTargetEncoder(m.anchors, m.anchor_masks, num_classes, m.image_size, cfg.data.max_boxes)


def check_yolo_config(m: YoloConfig, source: str = "model") -> None:
    from detectlab.errors import ConfigError

    if m.image_size % 32:
        raise ConfigError(f"{source}.image_size: must be a multiple of 32 for YOLO, got {m.image_size}")
    anchors = np.asarray(m.anchors, dtype=float)
    if anchors.ndim != 2 or anchors.shape[1] != 2 or (anchors <= 0).any():
        raise ConfigError(f"{source}.anchors: expected a list of positive [w, h] pairs")
    used = [i for mask in m.anchor_masks for i in mask]
    if any(i < 0 or i >= len(anchors) for i in used):
        raise ConfigError(f"{source}.anchor_masks: indices must be in 0..{len(anchors) - 1}")
    expected = 3 if m.backbone == "darknet53" else 2
    if len(m.anchor_masks) != expected:
        raise ConfigError(f"{source}.anchor_masks: {m.backbone} has {expected} output scales, got {len(m.anchor_masks)} masks")


MODELS.register(
    "yolov3",
    ModelFamily(
        name="yolov3",
        config_class=YoloConfig,
        build=build_yolov3,
        make_encoder=yolo_encoder,
        check=check_yolo_config,
        model_class=YoloV3,
    ),
)
