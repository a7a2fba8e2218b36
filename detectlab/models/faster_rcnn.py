"""Faster R-CNN (keras-frcnn design): VGG16 or ResNet-50/101 at stride 16, an RPN, and an
ROI classifier, trained *alternately* with ``train_on_batch``.

``FasterRCNN`` is the combined model (inputs ``images (B, S, S, 3)`` RGB 0-255 and
``rois (B, R, 4)`` normalised y1 x1 y2 x2; outputs RPN scores/deltas and classifier
probabilities/deltas): it is what checkpoints hold (with both optimizers' state). The
alternating loop trains it through an RPN view and a classifier view that share its layers
(:mod:`detectlab.training.alternating`, built on ``graph_parts``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import keras
import numpy as np

from detectlab.anchor_grid import REFERENCE_RATIOS
from detectlab.box_coding import DeltaCoder
from detectlab.config import Config, ModelConfig
from detectlab.data.rcnn_targets import RoiSampler, RpnTargetEncoder
from detectlab.errors import ConfigError
from detectlab.heads.faster_rcnn import box_outputs, resnet_classifier, rpn_head, vgg_classifier
from detectlab.layers.nms import PerClassNMS
from detectlab.layers.preprocess import IMAGENET_CAFFE_MEAN_RGB, ImageNormalization
from detectlab.layers.proposals import RpnProposals
from detectlab.layers.rcnn_detections import RcnnBoxDecoder
from detectlab.layers.roi_align import RoiAlign
from detectlab.losses.faster_rcnn import FasterRcnnCriterion
from detectlab.models.base import DetectorModel, threshold_inputs
from detectlab.models.family import ModelFamily, model_kwargs
from detectlab.registry import BACKBONES, MODELS

STRIDE = 16


@dataclass
class FasterRCNNConfig(ModelConfig):
    family: str = "faster_rcnn"
    backbone: Literal["vgg16", "resnet50", "resnet101"] = "vgg16"
    image_size: int = 800  # letterboxed square canvas; 800 keeps a 4:3 image's short side at 600
    anchor_scales: list[float] = field(default_factory=lambda: [128.0, 256.0, 512.0])
    anchor_ratios: list[list[float]] = field(default_factory=lambda: [list(r) for r in REFERENCE_RATIOS])
    rpn_positive_iou: float = 0.7
    rpn_negative_iou: float = 0.3
    rpn_samples: int = 256  # anchors per image in the RPN loss, at most half positive
    rpn_regr_std: float = 4.0
    proposals_pre_nms: int = 6000
    proposals_nms: float = 0.7
    proposals: int = 300
    num_rois: int = 32  # ROIs per image for the classifier, about half positive
    roi_fg_iou: float = 0.5
    roi_bg_iou: float = 0.1  # ROIs below this IoU with every ground truth are dropped
    classifier_regr_std: list[float] = field(default_factory=lambda: [8.0, 8.0, 4.0, 4.0])
    add_gt_as_proposals: bool = True  # keras-frcnn: false; helps early training
    pool_size: int | None = None  # ROI crop: 7 (VGG16) / 14 (ResNet, then stage 5)
    train_bn: bool = False  # ResNet batch-norm statistics frozen, as in the reference
    dropout: float = 0.5  # VGG16 fc layers
    imagenet_preprocessing: bool = True  # BGR + Caffe means (what ImageNet weights expect)
    width: float = 1.0  # channel multiplier (tests)
    resnet_stages: list[int] | None = None  # blocks per ResNet stage (tests); None: 50/101


def box_coders(rpn_regr_std, classifier_regr_std) -> tuple[DeltaCoder, DeltaCoder]:
    """The family's two codings, keras-frcnn's ``(tx, ty, tw, th)`` scaled: the RPN's (anchor ->
    box, times ``rpn_regr_std``) and the classifier's (ROI -> box, times ``classifier_regr_std``).
    The loader's RPN targets, the ROI sampler, the proposal layer and the box decoder all use
    these two objects."""
    return DeltaCoder.keras_frcnn(rpn_regr_std), DeltaCoder.keras_frcnn(classifier_regr_std)


class _Graph:
    """Plain holder (not tracked by Keras, so nothing is saved twice): the tensors that the
    training views (:mod:`detectlab.training.alternating`) and the inference model are built
    on, and the classifier head as a model on ``(features, rois)``."""

    def __init__(self, **parts):
        self.__dict__.update(parts)


@keras.saving.register_keras_serializable(package="detectlab")
class FasterRCNN(DetectorModel):
    CRITERION = FasterRcnnCriterion
    LAYER_PRESETS = {
        "all": ".*",
        "heads": r"(rpn_.*)|(fc\d.*)|(dense_.*)|(res5.*)|(bn5.*)|(flatten)|(merge_rois)|(split_rois)|(avg_pool)",
        "rpn": r"rpn_.*",
    }

    CONFIG = FasterRCNNConfig

    def __init__(self, num_classes: int, loss_weights: dict | None = None, class_names=None, category_ids=None,
                 loss_terms=None, label_smoothing: float = 0.0, **kwargs):
        """``kwargs``: any :class:`FasterRCNNConfig` field (its default otherwise), then
        ``keras.Model``'s own (``name``, ...)."""
        m, kwargs = self.split_settings(kwargs)
        resnet = m.backbone.startswith("resnet")
        pool_size = int(m.pool_size or (14 if resnet else 7))
        num_anchors = len(m.anchor_scales) * len(m.anchor_ratios)
        images = keras.Input((m.image_size, m.image_size, 3), name="images")
        rois = keras.Input((None, 4), name="rois")
        x = ImageNormalization(IMAGENET_CAFFE_MEAN_RGB if m.imagenet_preprocessing else (127.5,) * 3,
                               1.0 if m.imagenet_preprocessing else 127.5, bgr=m.imagenet_preprocessing,
                               name="image_normalization")(images)
        body = BACKBONES.get(m.backbone)
        features = body(x, width=m.width, train_bn=m.train_bn, stages=m.resnet_stages, stage5=False)["C4"]
        rpn_scores, rpn_deltas = rpn_head(features, num_anchors, max(1, int(round(512 * m.width))))
        pooled = RoiAlign(pool_size, name="roi_pooling")(features, rois)
        if resnet:
            head = resnet_classifier(pooled, rois, m.width, m.train_bn, blocks=(m.resnet_stages or [3])[-1])
        else:
            head = vgg_classifier(pooled, rois, m.width, m.dropout)
        class_probs, class_deltas = box_outputs(head, num_classes)
        super().__init__(inputs=[images, rois], outputs=[rpn_scores, rpn_deltas, class_probs, class_deltas], **kwargs)
        self._init_settings(m, num_classes)
        self._init_classes(num_classes, class_names, category_ids)
        self.rpn_coder, self.roi_coder = box_coders(m.rpn_regr_std, m.classifier_regr_std)
        self._init_losses(FasterRcnnCriterion(self.roi_coder, loss_terms, label_smoothing), loss_weights, track_l2=False)
        self.proposal_layer = RpnProposals(m.image_size, STRIDE, m.anchor_scales, m.anchor_ratios, self.rpn_coder,
                                           m.proposals_pre_nms, m.proposals_nms, m.proposals, name="rpn_proposals")
        head = keras.Model([features, rois], [class_probs, class_deltas], name="classifier_head")
        self.graph_parts = _Graph(images=images, rois=rois, features=features, rpn_scores=rpn_scores,
                                  rpn_deltas=rpn_deltas, class_probs=class_probs, class_deltas=class_deltas,
                                  classifier_head=head)

    def inference_model(self, score_threshold: float, nms_threshold: float, max_detections: int,
                        threshold_input: bool = False) -> keras.Model:
        """images -> ``boxes (B, K, 4)`` normalised y1 x1 y2 x2, ``scores``, ``class_ids``, ``valid``.
        With ``threshold_input`` the model takes ``[images, thresholds (B, 2)]`` (``[score, nms]``,
        row 0 used) and the two thresholds given here are unused (exported models)."""
        images = self.inputs[0]
        rpn_scores, rpn_deltas = self.outputs[0], self.outputs[1]
        proposals, _ = self.proposal_layer(rpn_scores, rpn_deltas)
        g = self.graph_parts
        probs, deltas = g.classifier_head([g.features, proposals])
        boxes, scores = RcnnBoxDecoder(self.num_classes, self.roi_coder, name="box_decoder")(proposals, probs, deltas)
        inputs, thresholds = threshold_inputs(images, threshold_input)
        outputs = PerClassNMS(max_detections, nms_threshold, score_threshold, name="nms")(boxes, scores, thresholds)
        names = ("boxes", "scores", "class_ids", "valid")
        return keras.Model(inputs, dict(zip(names, outputs)), name=f"{self.name}_inference")


def build_faster_rcnn(cfg: Config, num_classes: int, class_weights=None, classes=None) -> FasterRCNN:
    m: FasterRCNNConfig = cfg.model
    if class_weights is not None:
        raise ConfigError("loss.class_weights: not supported for faster_rcnn (its classifier samples balanced ROIs)")
    names, ids = classes or (None, None)
    return FasterRCNN(num_classes=num_classes, **model_kwargs(m), **FasterRCNN.loss_settings(cfg.loss),
                      class_names=names, category_ids=ids, name=f"faster_rcnn_{m.backbone}")


def faster_rcnn_encoder(cfg: Config, num_classes: int) -> RpnTargetEncoder:
    m: FasterRCNNConfig = cfg.model
    rpn_coder, _ = box_coders(m.rpn_regr_std, m.classifier_regr_std)
    return RpnTargetEncoder(m.image_size, STRIDE, m.anchor_scales, m.anchor_ratios, rpn_coder, m.rpn_positive_iou,
                            m.rpn_negative_iou, m.rpn_samples, cfg.data.max_boxes)


def roi_sampler(cfg: Config, num_classes: int) -> RoiSampler:
    m: FasterRCNNConfig = cfg.model
    _, roi_coder = box_coders(m.rpn_regr_std, m.classifier_regr_std)
    return RoiSampler(num_classes, roi_coder, m.num_rois, m.roi_fg_iou, m.roi_bg_iou, m.add_gt_as_proposals)


def check_faster_rcnn_config(m: FasterRCNNConfig, source: str = "model") -> None:
    if m.image_size % STRIDE:
        raise ConfigError(f"{source}.image_size: must be a multiple of the stride {STRIDE}, got {m.image_size}")
    ratios = np.asarray(m.anchor_ratios, dtype=float)
    if ratios.ndim != 2 or ratios.shape[1] != 2 or (ratios <= 0).any():
        raise ConfigError(f"{source}.anchor_ratios: expected [w, h] multiplier pairs, e.g. [[1, 1], [0.7, 1.4]]")
    if len(m.classifier_regr_std) != 4 or min(m.classifier_regr_std) <= 0:
        raise ConfigError(f"{source}.classifier_regr_std: expected 4 positive numbers (tx, ty, tw, th)")
    if m.rpn_regr_std <= 0:
        raise ConfigError(f"{source}.rpn_regr_std: must be positive, got {m.rpn_regr_std}")
    if not 0 <= m.roi_bg_iou < m.roi_fg_iou <= 1:
        raise ConfigError(f"{source}: need 0 <= roi_bg_iou < roi_fg_iou <= 1")


MODELS.register(
    "faster_rcnn",
    ModelFamily(
        name="faster_rcnn",
        config_class=FasterRCNNConfig,
        build=build_faster_rcnn,
        make_encoder=faster_rcnn_encoder,
        check=check_faster_rcnn_config,
        model_class=FasterRCNN,
        trainer="alternating",
        make_sampler=roi_sampler,
    ),
)
