"""Model families; importing this package registers every built-in in ``MODELS``."""

from detectlab.models import yolov3  # noqa: F401  (registers "yolov3")
from detectlab.models.yolov3 import YoloV3

__all__ = ["YoloV3"]
