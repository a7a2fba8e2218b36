"""Mask R-CNN (matterport design): ResNet-50/101 + FPN, a level-shared RPN, in-graph
proposals and detection targets, pyramid ROIAlign, box and mask heads.

:class:`FpnRcnn` builds the graph; :class:`MaskRCNN` is it with the mask head, and
:class:`~detectlab.models.faster_rcnn_fpn.FasterRCNNFPN` without (no mask input, target,
head or loss).

The saved model is the *training graph*: inputs ``images (B, S, S, 3)`` RGB 0-255 plus the
loader's targets (``gt_class_ids (B, M)`` 1..C / 0 pad / negative crowd, ``gt_boxes
(B, M, 4)`` normalised ``y1, x1, y2, x2``, ``gt_masks (B, M, 56, 56)`` mini masks,
``rpn_match (B, N)``, ``rpn_bbox (B, N, 4)``, ``sample_seeds (B,)`` the per-image seeds of the
in-graph ROI sampling; see
:mod:`detectlab.data.mask_rcnn_targets`); its outputs are the heads' predictions and the
targets they are scored against. ``compute_loss`` turns them into the named loss terms of
its :class:`MaskRcnnCriterion` (the reference's five by default) plus the weight decay (``l2_loss``), each tracked by a named ``Mean``. The mask head trains
on the positive ROIs only (the mask loss never looks at the others).
``inference_model`` reuses the same layers: images -> detections and 28x28 masks.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar, Literal

import keras
import numpy as np
import tensorflow as tf

from detectlab.anchor_pyramid import FPN_RATIOS, FPN_SCALES, FPN_STRIDES, anchors_per_level
from detectlab.backbones.fpn import fpn
from detectlab.box_coding import DeltaCoder
from detectlab.config import Config, ModelConfig
from detectlab.data.mask_rcnn_targets import MaskRcnnTargetEncoder
from detectlab.errors import ConfigError
from detectlab.heads.mask_rcnn import ClassIndex, ClassMasks, LeadingRois, box_head, mask_head, rpn_head
from detectlab.layers.detection_targets import DetectionTargets
from detectlab.layers.fpn_proposals import FpnProposals
from detectlab.layers.mrcnn_detections import MaskRcnnDetections
from detectlab.layers.preprocess import MASK_RCNN_MEAN_RGB, ImageNormalization
from detectlab.layers.regularizers import L2
from detectlab.losses.mask_rcnn import MaskRcnnCriterion
from detectlab.models.base import DetectorModel, threshold_inputs
from detectlab.models.family import ModelFamily, model_kwargs
from detectlab.registry import BACKBONES, MODELS

HEAD_LAYERS = r"(mrcnn_.*)|(rpn_.*)|(fpn_.*)"
BBOX_STD = (0.1, 0.1, 0.2, 0.2)  # matterport's RPN_BBOX_STD_DEV and BBOX_STD_DEV


def box_coders(rpn_bbox_std, bbox_std) -> tuple[DeltaCoder, DeltaCoder]:
    """The family's two codings, matterport's ``(dy, dx, dh, dw) / std``: the RPN's (anchor ->
    box) and the box head's (ROI -> box). The loader's RPN targets, the proposal layer, the
    detection-target layer and the detection layer all use these two objects."""
    return DeltaCoder.matterport(rpn_bbox_std), DeltaCoder.matterport(bbox_std)


@dataclass
class FpnRcnnConfig(ModelConfig):
    """The settings Mask R-CNN and Faster R-CNN FPN share."""

    backbone: Literal["resnet50", "resnet101"] = "resnet101"
    image_size: int = 1024  # square canvas (the reference's "square" resize)
    width: float = 1.0  # backbone channel multiplier (tests; FPN and heads keep their widths)
    resnet_stages: list[int] | None = None  # blocks per ResNet stage (tests); None: 50/101
    train_bn: bool = False  # batch-norm statistics frozen, as in the reference
    fpn_channels: int = 256  # FPN width; the RPN conv (2x) and the mask head convs follow it
    anchor_scales: list[float] = field(default_factory=lambda: list(FPN_SCALES))
    anchor_ratios: list[float] = field(default_factory=lambda: list(FPN_RATIOS))
    anchor_stride: int = 1
    rpn_positive_iou: float = 0.7
    rpn_negative_iou: float = 0.3
    rpn_samples: int = 256
    rpn_bbox_std: list[float] = field(default_factory=lambda: list(BBOX_STD))  # RPN deltas divided by this
    bbox_std: list[float] = field(default_factory=lambda: list(BBOX_STD))  # box-head deltas divided by this
    proposals_pre_nms: int = 6000
    proposals_nms: float = 0.7
    proposals_training: int = 2000
    proposals_inference: int = 1000
    train_rois: int = 200
    roi_positive_ratio: float = 0.33
    add_gt_as_proposals: bool = False
    pool_size: int = 7
    fc_size: int = 1024
    weight_decay: float = 1e-4  # L2 on every trained weight but batch-norm gamma/beta

    # what a checkpoint's network was trained as: taken from the file over the recipe's values
    TRAINED_WITH: ClassVar[tuple[str, ...]] = (
        "backbone", "width", "resnet_stages", "fpn_channels", "anchor_scales", "anchor_ratios", "anchor_stride",
        "rpn_bbox_std", "bbox_std", "pool_size", "mask_pool_size", "fc_size",
    )


@dataclass
class MaskRCNNConfig(FpnRcnnConfig):
    family: str = "mask_rcnn"
    mini_mask: int = 56
    mask_pool_size: int = 14


class FpnRcnn(DetectorModel):
    """The two-stage FPN graph. Subclasses set ``CONFIG``, ``CRITERION`` and ``WITH_MASKS``
    (whether the graph has the mask input, targets, head and loss)."""

    WITH_MASKS = True
    LAYER_PRESETS = {
        "heads": HEAD_LAYERS,
        "3+": r"(res3.*)|(bn3.*)|(res4.*)|(bn4.*)|(res5.*)|(bn5.*)|" + HEAD_LAYERS,
        "4+": r"(res4.*)|(bn4.*)|(res5.*)|(bn5.*)|" + HEAD_LAYERS,
        "5+": r"(res5.*)|(bn5.*)|" + HEAD_LAYERS,
        "all": ".*",
    }

    def __init__(self, num_classes: int, max_boxes: int = 100, loss_weights: dict | None = None, class_names=None,
                 category_ids=None, loss_terms=None, label_smoothing: float = 0.0, **kwargs):
        """``kwargs``: any field of the ``CONFIG`` dataclass (its default otherwise), then
        ``keras.Model``'s own (``name``, ...); ``max_boxes``: ground-truth slots per image."""
        m, kwargs = self.split_settings(kwargs)
        with_masks = self.WITH_MASKS
        num_anchors = sum(anchors_per_level(m.image_size, FPN_STRIDES, len(m.anchor_ratios), m.anchor_stride))
        inputs = {
            "images": keras.Input((m.image_size, m.image_size, 3), name="images"),
            "gt_class_ids": keras.Input((max_boxes,), dtype="int32", name="gt_class_ids"),
            "gt_boxes": keras.Input((max_boxes, 4), name="gt_boxes"),
            "rpn_match": keras.Input((num_anchors,), dtype="int32", name="rpn_match"),
            "rpn_bbox": keras.Input((num_anchors, 4), name="rpn_bbox"),
            "sample_seeds": keras.Input((), dtype="int64", name="sample_seeds"),
        }
        if with_masks:
            inputs["gt_masks"] = keras.Input((max_boxes, m.mini_mask, m.mini_mask), dtype="uint8", name="gt_masks")
        x = ImageNormalization(MASK_RCNN_MEAN_RGB, 1.0, name="image_normalization")(inputs["images"])
        features = BACKBONES.get(m.backbone)(x, width=m.width, train_bn=m.train_bn, stages=m.resnet_stages)
        pyramid = fpn(features, m.fpn_channels)
        rpn_logits, rpn_probs, rpn_deltas = rpn_head(pyramid, len(m.anchor_ratios), 2 * m.fpn_channels)
        self.rpn_coder, self.box_coder = box_coders(m.rpn_bbox_std, m.bbox_std)
        proposal_layer = FpnProposals(m.image_size, FPN_STRIDES, m.anchor_scales, m.anchor_ratios, m.anchor_stride,
                                      coder=self.rpn_coder, pre_nms=m.proposals_pre_nms, nms_threshold=m.proposals_nms,
                                      proposals_training=m.proposals_training, proposals_inference=m.proposals_inference,
                                      name="proposals")
        proposals, _ = proposal_layer(rpn_probs[..., 1], rpn_deltas, training=True)
        targets = DetectionTargets(m.train_rois, m.roi_positive_ratio, coder=self.box_coder,
                                   mask_size=2 * m.mask_pool_size if with_masks else None,
                                   add_gt_as_proposals=m.add_gt_as_proposals, name="detection_targets")
        gt_masks = inputs["gt_masks"] if with_masks else None
        rois, target_ids, target_deltas, *target_masks = targets(
            proposals, inputs["gt_class_ids"], inputs["gt_boxes"], gt_masks, inputs["sample_seeds"])
        class_logits, _probs, deltas = box_head(rois, pyramid, num_classes, m.image_size, m.pool_size, m.fc_size, m.train_bn)
        outputs = {
            "rpn_class_logits": rpn_logits, "rpn_bbox": rpn_deltas,
            "target_class_ids": target_ids, "target_deltas": target_deltas,
            "mrcnn_class_logits": class_logits, "mrcnn_bbox": deltas, "rois": rois,
        }
        if with_masks:
            positives = targets.max_positives
            mask_rois = LeadingRois(positives, name="positive_rois")(rois)
            masks = mask_head(mask_rois, pyramid, num_classes, m.image_size, m.mask_pool_size, m.train_bn, m.fpn_channels)
            outputs.update({
                "target_masks": LeadingRois(positives, name="positive_target_masks")(target_masks[0]),
                "target_mask_class_ids": LeadingRois(positives, name="positive_target_ids")(target_ids),
                "mrcnn_mask": masks,
            })
        super().__init__(inputs=inputs, outputs=outputs, **kwargs)
        self._init_settings(m, num_classes, max_boxes=int(max_boxes))
        self._init_classes(num_classes, class_names, category_ids)
        self._init_losses(self.CRITERION(self.box_coder, loss_terms, label_smoothing), loss_weights)
        self.proposal_layer = proposal_layer
        self._box_head = keras.Model([rois, *pyramid[:4]], [class_logits, _probs, deltas], name="box_head")
        if with_masks:
            self._mask_head = keras.Model([mask_rois, *pyramid[:4]], masks, name="mask_head")
        self._graph = dict(images=inputs["images"], pyramid=pyramid, rpn_probs=rpn_probs, rpn_deltas=rpn_deltas)

    def weight_decay_loss(self):
        """The reference's weight decay: ``wd * sum(w**2) / size(w)`` over every trained
        weight except batch-norm gamma/beta."""
        penalty = L2(self.constructor_args["weight_decay"])
        terms = [penalty(tf.cast(w, tf.float32)) / float(np.prod(w.shape))
                 for w in self.trainable_weights if not w.path.endswith(("gamma", "beta"))]
        return tf.add_n(terms) if terms and penalty.l2 else tf.zeros(())

    def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None, training=True):
        return self.total_loss(self.criterion(x, y, y_pred), self.weight_decay_loss())

    def inference_model(self, score_threshold: float, nms_threshold: float, max_detections: int,
                        threshold_input: bool = False) -> keras.Model:
        """images -> ``boxes (B, K, 4)`` normalised, ``scores``, ``class_ids`` (0..C-1),
        ``valid``, and with the mask head ``masks (B, K, 28, 28)`` probabilities in each box's frame.
        With ``threshold_input`` the model takes ``[images, thresholds (B, 2)]`` (``[score, nms]``,
        row 0 used) and the two thresholds given here are unused (exported models)."""
        g = self._graph
        proposals, _ = self.proposal_layer(g["rpn_probs"][..., 1], g["rpn_deltas"], training=False)
        _, probs, deltas = self._box_head([proposals, *g["pyramid"][:4]])
        inputs, thresholds = threshold_inputs(g["images"], threshold_input)
        boxes, class_ids, scores, valid = MaskRcnnDetections(max_detections, score_threshold, nms_threshold,
                                                             coder=self.box_coder, name="detections")(
            proposals, probs, deltas, thresholds)
        outputs = {"boxes": boxes, "scores": scores, "class_ids": ClassIndex(name="class_index")(class_ids),
                   "valid": valid}
        if self.WITH_MASKS:
            outputs["masks"] = ClassMasks(name="class_masks")(self._mask_head([boxes, *g["pyramid"][:4]]), class_ids)
        return keras.Model(inputs, outputs, name=f"{self.name}_inference")


@keras.saving.register_keras_serializable(package="detectlab")
class MaskRCNN(FpnRcnn):
    CRITERION = MaskRcnnCriterion
    CONFIG = MaskRCNNConfig
    WITH_MASKS = True


def build_fpn_rcnn(model_class, cfg: Config, num_classes: int, class_weights=None, classes=None) -> FpnRcnn:
    """``model_class`` (:class:`MaskRCNN` or ``FasterRCNNFPN``) from the recipe."""
    m: FpnRcnnConfig = cfg.model
    if class_weights is not None:
        raise ConfigError(f"loss.class_weights: not supported for {m.family} (its heads sample balanced ROIs)")
    names, ids = classes or (None, None)
    return model_class(num_classes=num_classes, **model_kwargs(m), max_boxes=cfg.data.max_boxes,
                       **model_class.loss_settings(cfg.loss), class_names=names, category_ids=ids,
                       name=f"{m.family}_{m.backbone}")


def build_mask_rcnn(cfg: Config, num_classes: int, class_weights=None, classes=None) -> MaskRCNN:
    return build_fpn_rcnn(MaskRCNN, cfg, num_classes, class_weights, classes)


def fpn_rcnn_encoder(cfg: Config, num_classes: int) -> MaskRcnnTargetEncoder:
    """The loader's encoder; mini masks only for a recipe with ``mini_mask`` (Mask R-CNN)."""
    m: FpnRcnnConfig = cfg.model
    rpn_coder, _ = box_coders(m.rpn_bbox_std, m.bbox_std)
    return MaskRcnnTargetEncoder(m.image_size, FPN_STRIDES, m.anchor_scales, m.anchor_ratios, rpn_coder, m.anchor_stride,
                                 m.rpn_positive_iou, m.rpn_negative_iou, m.rpn_samples,
                                 mini_mask=getattr(m, "mini_mask", None), max_boxes=cfg.data.max_boxes)


def check_fpn_rcnn_config(m: FpnRcnnConfig, source: str = "model") -> None:
    if m.image_size % 64:
        raise ConfigError(f"{source}.image_size: must be a multiple of 64 (P6 has stride 64), got {m.image_size}")
    if len(m.anchor_scales) != len(FPN_STRIDES):
        raise ConfigError(f"{source}.anchor_scales: one scale per pyramid level P2-P6 ({len(FPN_STRIDES)}), got {len(m.anchor_scales)}")
    if not 0 < m.roi_positive_ratio <= 1:
        raise ConfigError(f"{source}.roi_positive_ratio: must be in (0, 1], got {m.roi_positive_ratio}")
    for key in ("rpn_bbox_std", "bbox_std"):
        std = getattr(m, key)
        if len(std) != 4 or min(std) <= 0:
            raise ConfigError(f"{source}.{key}: expected 4 positive numbers (dy, dx, dh, dw), got {std}")


MODELS.register(
    "mask_rcnn",
    ModelFamily(
        name="mask_rcnn",
        config_class=MaskRCNNConfig,
        build=build_mask_rcnn,
        make_encoder=fpn_rcnn_encoder,
        check=check_fpn_rcnn_config,
        model_class=MaskRCNN,
        with_masks=True,
    ),
)
