"""Faster R-CNN (keras-frcnn design): VGG16 or ResNet-50/101 at stride 16, an RPN, and an
ROI classifier, trained *alternately* with ``train_on_batch``.

``FasterRCNN`` is the combined model (inputs ``images (B, S, S, 3)`` RGB 0-255 and
``rois (B, R, 4)`` normalised y1 x1 y2 x2; outputs RPN scores/deltas and classifier
probabilities/deltas): it is what checkpoints hold (with both optimizers' state). Its two
training views share its layers:

- ``rpn_view``: images -> RPN; ``train_on_batch`` returns ``rpn_loss_cls``,
  ``rpn_loss_regr``, ``rpn_loss`` and the proposals decoded (in-graph) from the very
  predictions it trained on (the reference ran an extra ``predict_on_batch`` for them);
- ``classifier_view``: images + ROIs -> classifier; returns ``class_loss_cls``,
  ``class_loss_regr``, ``class_acc``, ``class_loss``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import keras
import numpy as np
import tensorflow as tf

from detectlab.anchors import REFERENCE_RATIOS
from detectlab.config import Config, ModelConfig
from detectlab.data.rcnn_targets import RoiSampler, RpnTargetEncoder
from detectlab.errors import ConfigError
from detectlab.heads.faster_rcnn import box_outputs, resnet_classifier, rpn_head, vgg_classifier
from detectlab.layers.nms import PerClassNMS
from detectlab.layers.preprocess import IMAGENET_CAFFE_MEAN_RGB, ImageNormalization
from detectlab.layers.proposals import RpnProposals
from detectlab.layers.rcnn_detections import RcnnBoxDecoder
from detectlab.layers.roi_align import RoiAlign
from detectlab.losses.faster_rcnn import FASTER_RCNN_LOSS_NAMES, class_accuracy
from detectlab.models.base import DetectorModel, replica_scale, threshold_inputs
from detectlab.models.family import ModelFamily, model_kwargs
from detectlab.registry import BACKBONES, LOSSES, MODELS

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


class TrainingView(keras.Model):
    """A functional view on some of the combined model's layers, with named losses.

    ``losses``: name -> ``fn(y, outputs)``; logs are the weighted named losses, their sum
    under ``total_name`` and any ``metrics`` (name -> ``fn(y, outputs)``).
    """

    def __init__(self, inputs, outputs, losses: dict, weights: dict, total_name: str, metrics=None, extra=None, **kwargs):
        super().__init__(inputs=inputs, outputs=outputs, **kwargs)
        self.term_fns = losses
        self.term_weights = {k: float(weights.get(k, 1.0)) for k in losses}
        self.metric_fns = metrics or {}
        self.extra_fn = extra
        self.total_name = total_name
        self.trackers = {n: keras.metrics.Mean(name=n) for n in (*losses, *self.metric_fns, total_name)}

    def _named_losses(self, y, outputs):
        total = 0.0
        for name, fn in self.term_fns.items():
            value = self.term_weights[name] * fn(y, outputs)
            self.trackers[name].update_state(value)
            total = total + value
        for name, fn in self.metric_fns.items():
            self.trackers[name].update_state(fn(y, outputs))
        self.trackers[self.total_name].update_state(total)
        return total

    def _step_logs(self, outputs) -> dict:
        logs = {name: t.result() for name, t in self.trackers.items()}
        if self.extra_fn is not None:
            logs.update(self.extra_fn(outputs))
        return logs

    def train_step(self, data):
        x, y = data[0], data[1]
        with tf.GradientTape() as tape:
            outputs = self(x, training=True)
            loss = replica_scale(self._named_losses(y, outputs))
            scaled = self.optimizer.scale_loss(loss)
        variables = self.trainable_variables
        self.optimizer.apply_gradients(zip(tape.gradient(scaled, variables), variables))
        return self._step_logs(outputs)

    def test_step(self, data):
        x, y = data[0], data[1]
        outputs = self(x, training=False)
        self._named_losses(y, outputs)
        return self._step_logs(outputs)


class LearningRates:
    """Stands in as ``model.optimizer`` for callbacks: reads the RPN optimizer's rate and
    sets both (``ReduceLROnPlateau``); ``optimizers`` lets TensorBoard log each."""

    def __init__(self, *optimizers):
        self.optimizers = list(optimizers)

    @property
    def learning_rate(self):
        return self.optimizers[0].learning_rate

    @learning_rate.setter
    def learning_rate(self, value):
        for optimizer in self.optimizers:
            optimizer.learning_rate = value

    @property
    def iterations(self):
        return self.optimizers[0].iterations


class _Views:
    """Plain holder (not tracked by Keras, so the views are not saved twice): the training
    views, the classifier head as a model on (features, rois), and the features tensor."""

    def __init__(self, rpn, classifier, head, features):
        self.rpn, self.classifier, self.head, self.features = rpn, classifier, head, features


@keras.saving.register_keras_serializable(package="detectlab")
class FasterRCNN(DetectorModel):
    LOSS_NAMES = FASTER_RCNN_LOSS_NAMES
    LAYER_PRESETS = {
        "all": ".*",
        "heads": r"(rpn_.*)|(fc\d.*)|(dense_.*)|(res5.*)|(bn5.*)|(flatten)|(merge_rois)|(split_rois)|(avg_pool)",
        "rpn": r"rpn_.*",
    }

    def __init__(
        self,
        num_classes: int,
        backbone: str = "vgg16",
        image_size: int = 800,
        anchor_scales=(128.0, 256.0, 512.0),
        anchor_ratios=REFERENCE_RATIOS,
        rpn_regr_std: float = 4.0,
        proposals_pre_nms: int = 6000,
        proposals_nms: float = 0.7,
        proposals: int = 300,
        classifier_regr_std=(8.0, 8.0, 4.0, 4.0),
        pool_size: int | None = None,
        train_bn: bool = False,
        dropout: float = 0.5,
        imagenet_preprocessing: bool = True,
        width: float = 1.0,
        resnet_stages=None,
        loss_weights: dict | None = None,
        class_names=None,
        category_ids=None,
        **kwargs,
    ):
        resnet = backbone.startswith("resnet")
        pool_size = int(pool_size or (14 if resnet else 7))
        num_anchors = len(anchor_scales) * len(anchor_ratios)
        images = keras.Input((image_size, image_size, 3), name="images")
        rois = keras.Input((None, 4), name="rois")
        x = ImageNormalization(IMAGENET_CAFFE_MEAN_RGB if imagenet_preprocessing else (127.5,) * 3,
                               1.0 if imagenet_preprocessing else 127.5, bgr=imagenet_preprocessing,
                               name="image_normalization")(images)
        body = BACKBONES.get(backbone)
        features = body(x, width=width, train_bn=train_bn, stages=resnet_stages, stage5=False)["C4"]
        rpn_scores, rpn_deltas = rpn_head(features, num_anchors, max(1, int(round(512 * width))))
        pooled = RoiAlign(pool_size, name="roi_pooling")(features, rois)
        if resnet:
            head = resnet_classifier(pooled, rois, width, train_bn, blocks=(resnet_stages or [3])[-1])
        else:
            head = vgg_classifier(pooled, rois, width, dropout)
        class_probs, class_deltas = box_outputs(head, num_classes)
        super().__init__(inputs=[images, rois], outputs=[rpn_scores, rpn_deltas, class_probs, class_deltas], **kwargs)
        self.constructor_args = {
            "num_classes": int(num_classes), "backbone": backbone, "image_size": int(image_size),
            "anchor_scales": [float(s) for s in anchor_scales], "anchor_ratios": [[float(v) for v in r] for r in anchor_ratios],
            "rpn_regr_std": float(rpn_regr_std), "proposals_pre_nms": int(proposals_pre_nms),
            "proposals_nms": float(proposals_nms), "proposals": int(proposals),
            "classifier_regr_std": [float(s) for s in classifier_regr_std], "pool_size": pool_size,
            "train_bn": bool(train_bn), "dropout": float(dropout), "imagenet_preprocessing": bool(imagenet_preprocessing),
            "width": float(width), "resnet_stages": list(resnet_stages) if resnet_stages else None,
            "loss_weights": dict(loss_weights or {}),
        }
        self._init_classes(num_classes, class_names, category_ids)
        self._init_losses(loss_weights, track_l2=False)
        self.proposal_layer = RpnProposals(image_size, STRIDE, anchor_scales, anchor_ratios, rpn_regr_std,
                                           proposals_pre_nms, proposals_nms, proposals, name="rpn_proposals")
        self._views = self._build_views(images, rois, features, rpn_scores, rpn_deltas, class_probs, class_deltas)

    def _build_views(self, images, rois, features, rpn_scores, rpn_deltas, class_probs, class_deltas) -> _Views:
        get = LOSSES.get

        def proposals(outputs):
            boxes, counts = self.proposal_layer(outputs[0], outputs[1])
            return {"proposals": boxes, "proposal_counts": counts}

        rpn = TrainingView(
            images, [rpn_scores, rpn_deltas],
            losses={"rpn_loss_cls": lambda y, o: get("rpn_loss_cls")(y["rpn_class"], o[0]),
                    "rpn_loss_regr": lambda y, o: get("rpn_loss_regr")(y["rpn_regress"], o[1])},
            weights=self.loss_weights, total_name="rpn_loss", extra=proposals, name="rpn_view",
        )
        classifier = TrainingView(
            [images, rois], [class_probs, class_deltas],
            losses={"class_loss_cls": lambda y, o: get("class_loss_cls")(y["classes"], o[0]),
                    "class_loss_regr": lambda y, o: get("class_loss_regr")(y["regress"], o[1])},
            weights=self.loss_weights, total_name="class_loss",
            metrics={"class_acc": lambda y, o: class_accuracy(y["classes"], o[0])}, name="classifier_view",
        )
        head = keras.Model([features, rois], [class_probs, class_deltas], name="classifier_head")
        return _Views(rpn, classifier, head, features)

    @property
    def rpn_view(self) -> TrainingView:
        return self._views.rpn

    @property
    def classifier_view(self) -> TrainingView:
        return self._views.classifier

    def compile_views(self, rpn_optimizer, classifier_optimizer, jit_compile: bool = False) -> None:
        """Compile both views; the combined model keeps both optimizers (saved with it)."""
        self.rpn_view.compile(optimizer=rpn_optimizer, jit_compile=jit_compile)
        self.classifier_view.compile(optimizer=classifier_optimizer, jit_compile=jit_compile)
        self.rpn_optimizer, self.classifier_optimizer = rpn_optimizer, classifier_optimizer
        for view, optimizer in ((self.rpn_view, rpn_optimizer), (self.classifier_view, classifier_optimizer)):
            optimizer.build(view.trainable_variables)
        self.optimizer = LearningRates(rpn_optimizer, classifier_optimizer)

    def inference_model(self, score_threshold: float, nms_threshold: float, max_detections: int,
                        threshold_input: bool = False) -> keras.Model:
        """images -> ``boxes (B, K, 4)`` normalised y1 x1 y2 x2, ``scores``, ``class_ids``, ``valid``.
        With ``threshold_input`` the model takes ``[images, thresholds (B, 2)]`` (``[score, nms]``,
        row 0 used) and the two thresholds given here are unused (exported models)."""
        images = self.inputs[0]
        rpn_scores, rpn_deltas = self.outputs[0], self.outputs[1]
        proposals, _ = self.proposal_layer(rpn_scores, rpn_deltas)
        probs, deltas = self._views.head([self._views.features, proposals])
        args = self.constructor_args
        boxes, scores = RcnnBoxDecoder(self.num_classes, args["classifier_regr_std"], name="box_decoder")(proposals, probs, deltas)
        inputs, thresholds = threshold_inputs(images, threshold_input)
        outputs = PerClassNMS(max_detections, nms_threshold, score_threshold, name="nms")(boxes, scores, thresholds)
        names = ("boxes", "scores", "class_ids", "valid")
        return keras.Model(inputs, dict(zip(names, outputs)), name=f"{self.name}_inference")


def build_faster_rcnn(cfg: Config, num_classes: int, class_weights=None, classes=None) -> FasterRCNN:
    m: FasterRCNNConfig = cfg.model
    if class_weights is not None:
        raise ConfigError("loss.class_weights: not supported for faster_rcnn (its classifier samples balanced ROIs)")
    names, ids = classes or (None, None)
    return FasterRCNN(num_classes=num_classes, **model_kwargs(m, FasterRCNN), loss_weights=cfg.loss.weights,
                      class_names=names, category_ids=ids, name=f"faster_rcnn_{m.backbone}")


def faster_rcnn_encoder(cfg: Config, num_classes: int) -> RpnTargetEncoder:
    m: FasterRCNNConfig = cfg.model
    return RpnTargetEncoder(m.image_size, STRIDE, m.anchor_scales, m.anchor_ratios, m.rpn_positive_iou,
                            m.rpn_negative_iou, m.rpn_samples, m.rpn_regr_std, cfg.data.max_boxes)


def roi_sampler(cfg: Config, num_classes: int) -> RoiSampler:
    m: FasterRCNNConfig = cfg.model
    return RoiSampler(num_classes, m.num_rois, m.roi_fg_iou, m.roi_bg_iou, m.classifier_regr_std, m.add_gt_as_proposals)


def check_faster_rcnn_config(m: FasterRCNNConfig, source: str = "model") -> None:
    if m.image_size % STRIDE:
        raise ConfigError(f"{source}.image_size: must be a multiple of the stride {STRIDE}, got {m.image_size}")
    ratios = np.asarray(m.anchor_ratios, dtype=float)
    if ratios.ndim != 2 or ratios.shape[1] != 2 or (ratios <= 0).any():
        raise ConfigError(f"{source}.anchor_ratios: expected [w, h] multiplier pairs, e.g. [[1, 1], [0.7, 1.4]]")
    if len(m.classifier_regr_std) != 4:
        raise ConfigError(f"{source}.classifier_regr_std: expected 4 numbers")
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
