"""Faster R-CNN R50/R101-FPN: the Mask R-CNN graph (:class:`~detectlab.models.mask_rcnn.FpnRcnn`)
without its mask head, Detectron2's and Model Garden's most used detector.

Same backbone, FPN, level-shared RPN, in-graph proposals and detection targets, pyramid
ROIAlign and box head as :class:`~detectlab.models.mask_rcnn.MaskRCNN`, under the same layer
names, so matterport ``mask_rcnn_*.h5`` files load by name (their mask head, ``mrcnn_mask*``,
is left out and listed in the load report). It trains through ``fit`` like Mask R-CNN, on
Mask R-CNN's criterion without the mask term (by default ``rpn_class_loss``,
``rpn_bbox_loss``, ``mrcnn_class_loss``, ``mrcnn_bbox_loss``; ``loss.box`` and
``loss.label_smoothing`` as for Mask R-CNN), and its samples carry no masks.
"""

from __future__ import annotations

from dataclasses import dataclass

import keras

from detectlab.config import Config
from detectlab.losses.mask_rcnn import FasterRcnnFpnCriterion
from detectlab.models.family import ModelFamily
from detectlab.models.mask_rcnn import FpnRcnn, FpnRcnnConfig, build_fpn_rcnn, check_fpn_rcnn_config, fpn_rcnn_encoder
from detectlab.registry import MODELS

MASK_HEAD_LAYERS = r"mrcnn_mask.*"  # matterport's mask head, absent here


@dataclass
class FasterRCNNFPNConfig(FpnRcnnConfig):
    family: str = "faster_rcnn_fpn"


@keras.saving.register_keras_serializable(package="detectlab")
class FasterRCNNFPN(FpnRcnn):
    CRITERION = FasterRcnnFpnCriterion
    CONFIG = FasterRCNNFPNConfig
    WITH_MASKS = False
    LEFT_OUT_LAYERS = MASK_HEAD_LAYERS  # layers of a by-name file this model leaves out by design


def build_faster_rcnn_fpn(cfg: Config, num_classes: int, class_weights=None, classes=None) -> FasterRCNNFPN:
    return build_fpn_rcnn(FasterRCNNFPN, cfg, num_classes, class_weights, classes)


MODELS.register(
    "faster_rcnn_fpn",
    ModelFamily(
        name="faster_rcnn_fpn",
        config_class=FasterRCNNFPNConfig,
        build=build_faster_rcnn_fpn,
        make_encoder=fpn_rcnn_encoder,
        check=check_fpn_rcnn_config,
        model_class=FasterRCNNFPN,
    ),
)
