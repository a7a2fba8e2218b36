"""Model families; importing this package registers every built-in in ``MODELS``."""

from detectlab.models import faster_rcnn, faster_rcnn_fpn, mask_rcnn, yolov3  # noqa: F401  (register the families)
from detectlab.models.faster_rcnn import FasterRCNN
from detectlab.models.faster_rcnn_fpn import FasterRCNNFPN
from detectlab.models.mask_rcnn import MaskRCNN
from detectlab.models.yolov3 import YoloV3

__all__ = ["FasterRCNN", "FasterRCNNFPN", "MaskRCNN", "YoloV3"]
