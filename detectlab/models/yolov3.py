"""YOLOv3 (Darknet-53, three scales) and YOLOv3-tiny (two scales).

Input: ``(B, H, W, 3)`` RGB in ``[0, 255]`` (uint8 is fine), ``H, W`` multiples of 32.
Outputs: one raw tensor per scale, ``yolo_output_L`` of shape ``(B, H/s, W/s, A*(5+C))``
with ``s = 32 / 2**L``. Layer names: ``darknet_*`` (body) and ``yolo_*`` (head).
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass, field
from typing import ClassVar, Literal

import keras
import numpy as np

from detectlab.backbones.darknet import DarknetLayers
from detectlab.config import Config, ModelConfig
from detectlab.data.yolo_targets import YoloTargetEncoder
from detectlab.heads.yolo import set_prior_biases, yolov3_head, yolov3_tiny_head
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
    # w, h pairs in input pixels, or "auto": k-means on the training boxes when the output
    # convolutions start fresh (from scratch, or --weights with another class count), else
    # the reference anchors of the backbone (those the published weights were trained with)
    anchors: list[list[float]] | Literal["auto"] = field(default_factory=lambda: [list(a) for a in YOLOV3_ANCHORS])
    anchor_masks: list[list[int]] = field(default_factory=lambda: [list(m) for m in YOLOV3_MASKS])
    ignore_thresh: float = 0.5  # the reference uses 0.7 for tiny
    # null: each box trains its best anchor only (the reference); r: also every anchor within
    # r times its width and height (YOLOv5's anchor_t 4: more positives, for small data)
    match_ratio: float | None = None
    width: float = 1.0  # channel multiplier (tests shrink it; 1.0 is the real network)
    darknet_blocks: list[int] = field(default_factory=lambda: [1, 2, 8, 8, 4])
    l2: float = 5e-4  # kernel L2 of every convolution (logged as l2_loss)

    # what a weights file's network was trained as: taken from the file (a Darknet .cfg, a
    # checkpoint) over the recipe's values (detectlab.models.loading.adopt_file_settings)
    TRAINED_WITH: ClassVar[tuple[str, ...]] = ("backbone", "width", "darknet_blocks", "anchors", "anchor_masks")


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
        for level, mask in enumerate(m.anchor_masks):  # a loaded file overwrites them; fresh outputs keep them
            set_prior_biases(self.get_layer(f"yolo_output_{level}"), len(mask), num_classes)
        self._init_settings(m, num_classes,
                            class_weights=None if class_weights is None else [float(w) for w in class_weights])
        self._init_classes(num_classes, class_names, category_ids)
        self._init_losses(YoloCriterion(m.anchors, m.anchor_masks, num_classes, m.ignore_thresh, class_weights,
                                        loss_terms, label_smoothing), loss_weights)

    def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None, training=True):
        return self.total_loss(self.criterion(x, y, y_pred))

    def set_anchors(self, anchors) -> None:
        """Use other anchors (``(A, 2)`` w, h in input pixels, as many as before): the loss and
        the decoding follow; the weights stay."""
        anchors = [[float(w), float(h)] for w, h in np.asarray(anchors, np.float64).reshape(-1, 2)]
        if len(anchors) != len(self.constructor_args["anchors"]):
            raise ValueError(f"{len(anchors)} anchors for a model with {len(self.constructor_args['anchors'])}")
        self.constructor_args["anchors"] = anchors
        self.criterion.anchors = np.asarray(anchors, np.float32)
        self.train_function = self.test_function = None  # retrace with the new anchors

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
    if m.anchors == "auto":  # without training data (summary, benchmark): the backbone's reference anchors
        m = dataclasses.replace(m, anchors=reference_anchors(m))
    names, ids = classes or (None, None)
    return YoloV3(num_classes=num_classes, **model_kwargs(m), **YoloV3.loss_settings(cfg.loss), class_weights=class_weights,
                  class_names=names, category_ids=ids, name="yolov3" if m.backbone == "darknet53" else "yolov3_tiny")


def yolo_encoder(cfg: Config, num_classes: int) -> YoloTargetEncoder:
    m: YoloConfig = cfg.model
    return YoloTargetEncoder(m.anchors, m.anchor_masks, num_classes, m.image_size, cfg.data.max_boxes, m.match_ratio)


def reference_anchors(m: YoloConfig) -> list[list[float]]:
    """The backbone's published anchors (at 416 px, where Darknet's weights use them)."""
    return [list(map(float, a)) for a in (YOLOV3_ANCHORS if m.backbone == "darknet53" else TINY_ANCHORS)]


def anchor_count(m: YoloConfig) -> int:
    """How many anchors the masks use (a list of anchors must have exactly these)."""
    return max(i for mask in m.anchor_masks for i in mask) + 1


def fit_yolo_anchors(cfg: Config, dataset, loaded_layers=(), report: bool = True, stated: dict | None = None) -> Config:
    """The anchor check at training start. ``model.anchors: auto`` becomes concrete anchors:
    k-means on the training boxes (letterboxed to ``image_size``) unless the output
    convolutions were loaded (``loaded_layers``), which keep the anchors they were trained
    with: those the weights file states (``stated``, e.g. its Darknet ``.cfg``'s), else the
    backbone's reference anchors. With ``report``, logs the anchors' fit: the best possible
    recall (AutoAnchor's rule, boxes within 4x of an anchor in width and height) and, below
    0.98, the command that computes better ones."""
    from detectlab.data.anchor_kmeans import BPR_THRESHOLD, best_possible_recall, box_sizes, kmeans_anchors, mean_best_iou
    from detectlab.utils import log

    m: YoloConfig = cfg.model
    sizes = box_sizes(dataset, m.image_size)
    anchors, how = m.anchors, "recipe"
    k = anchor_count(m)
    if anchors == "auto":
        outputs = [n for n in loaded_layers if re.fullmatch(YoloV3.LAYER_PRESETS["outputs"], n)]
        if outputs and (stated or {}).get("anchors"):
            anchors, how = [list(map(float, a)) for a in stated["anchors"]], \
                "the weights file's (the loaded output convolutions were trained with them)"
        elif outputs or len(sizes) < len({i for mask in m.anchor_masks for i in mask}):
            anchors, how = reference_anchors(m), ("reference (the loaded output convolutions were trained with them)"
                                                 if outputs else f"reference (only {len(sizes)} training boxes)")
        else:  # the anchors the masks use, by size; an unused slot keeps its reference anchor
            used = sorted({i for mask in m.anchor_masks for i in mask})
            anchors = (reference_anchors(m) + [[1.0, 1.0]] * k)[:k]
            for i, (w, h) in zip(used, kmeans_anchors(sizes, len(used), seed=cfg.train.seed)):
                anchors[i] = [round(float(w), 1), round(float(h), 1)]
            how = f"k-means on {len(sizes)} training boxes"
    if report and len(sizes):
        used = np.asarray(anchors, np.float64)[sorted({i for mask in m.anchor_masks for i in mask})]
        bpr = best_possible_recall(sizes, used)
        log.info("anchors (%s): %s; best possible recall %.3f, mean best IoU %.3f", how,
                 " ".join(f"{w:g}x{h:g}" for w, h in anchors), bpr, mean_best_iou(sizes, used))
        if bpr < BPR_THRESHOLD:
            where = dataset.annotation_file or "TRAIN.json"
            log.warning("the anchors reach only %.1f%% of the training boxes (within 4x in width and height; "
                        "AutoAnchor wants %.0f%%): compute better ones with  python tools/kmeans_anchors.py --data %s "
                        "--image-size %d -k %d  and set model.anchors (or model.anchors: auto)", 100 * bpr,
                        100 * BPR_THRESHOLD, where, m.image_size, k)
    return dataclasses.replace(cfg, model=dataclasses.replace(m, anchors=anchors))


def check_yolo_config(m: YoloConfig, source: str = "model") -> None:
    from detectlab.errors import ConfigError

    if m.image_size % 32:
        raise ConfigError(f"{source}.image_size: must be a multiple of 32 for YOLO, got {m.image_size}")
    used = [i for mask in m.anchor_masks for i in mask]
    if min(used, default=0) < 0:
        raise ConfigError(f"{source}.anchor_masks: indices must be 0 or more")
    if m.anchors == "auto":
        return
    anchors = np.asarray(m.anchors, dtype=float)
    if anchors.ndim != 2 or anchors.shape[1] != 2 or (anchors <= 0).any():
        raise ConfigError(f"{source}.anchors: expected a list of positive [w, h] pairs, or auto")
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
        input_stride=32,
        fit_anchors=fit_yolo_anchors,
    ),
)
