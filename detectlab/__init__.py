"""detectlab: Mask R-CNN, Faster R-CNN and YOLOv3 on TensorFlow 2 / Keras 3.

``import detectlab`` selects the TensorFlow backend, quiets TensorFlow's C++ logging and
registers every built-in backbone, loss, model family and dataset format.
"""

import os

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
if os.environ["KERAS_BACKEND"] != "tensorflow":
    raise ImportError("detectlab runs on the TensorFlow backend only: set KERAS_BACKEND=tensorflow")

from detectlab._quiet import import_tensorflow_quietly  # noqa: E402

import_tensorflow_quietly()

from detectlab.registry import BACKBONES, DATASET_FORMATS, LOSSES, MODELS  # noqa: E402

# Every built-in registers itself (registries, Keras serialisation) when imported:
from detectlab.backbones import darknet, resnet, vgg  # noqa: E402,F401
from detectlab.data import coco  # noqa: E402,F401
from detectlab.data.importers import import_all_importers  # noqa: E402

import_all_importers()
from detectlab.layers import batch_norm, conv, nms, preprocess, proposals, rcnn_detections, regularizers, roi_align  # noqa: E402,F401
from detectlab.layers import detection_targets, fpn_proposals, mrcnn_detections, pyramid_roi_align  # noqa: E402,F401
from detectlab.layers import yolo as yolo_layers  # noqa: E402,F401
from detectlab.losses import faster_rcnn as faster_rcnn_losses, mask_rcnn as mask_rcnn_losses, yolo  # noqa: E402,F401
from detectlab import models  # noqa: E402,F401
from detectlab.training import optimizers  # noqa: E402,F401
from detectlab.config import Config, load_config  # noqa: E402
from detectlab.errors import DetectlabError  # noqa: E402

__version__ = "0.1.0"
__all__ = ["BACKBONES", "LOSSES", "MODELS", "DATASET_FORMATS", "Config", "load_config", "DetectlabError"]
