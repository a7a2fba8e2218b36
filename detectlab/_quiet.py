"""Import TensorFlow without the C++ start-up chatter.

TensorFlow 2.21 writes several lines (oneDNN notice, missing CUDA drivers) straight to the
process's stderr before its logging is initialised, so ``TF_CPP_MIN_LOG_LEVEL`` cannot
hide them. While TensorFlow imports and lists its devices, file descriptor 2 points at
``/dev/null``; Python exceptions still propagate. Set ``DETECTLAB_TF_LOGS=1`` to see them.
"""

from __future__ import annotations

import os
import sys


def import_tensorflow_quietly() -> None:
    if "tensorflow" in sys.modules or os.environ.get("DETECTLAB_TF_LOGS"):
        import tensorflow  # noqa: F401

        return
    sys.stderr.flush()
    saved = os.dup(2)
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 2)
        import tensorflow as tf

        tf.config.list_physical_devices()
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)
