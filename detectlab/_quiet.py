"""Import TensorFlow without the C++ start-up chatter.

TensorFlow 2.21 writes several lines (oneDNN notice, missing CUDA drivers) straight to the
process's stderr before its logging is initialised, so ``TF_CPP_MIN_LOG_LEVEL`` cannot
hide them. While TensorFlow imports and lists its devices, file descriptor 2 points at
``/dev/null``; Python exceptions still propagate. Set ``DETECTLAB_TF_LOGS=1`` to see them.
Lines TensorFlow prints later, while running (see :data:`NOISE`), are dropped by
:func:`filtered_native_stderr`, which the command-line tools run inside.
"""

from __future__ import annotations

import contextlib
import os
import sys
import threading


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


# C++ lines TensorFlow prints later, at run time, that tell a user nothing they can act on.
NOISE = (
    b"oneDNN supports DT_INT32 only on platforms with AVX-512",  # an int32 transpose, once per process
)


@contextlib.contextmanager
def filtered_native_stderr(noise: tuple[bytes, ...] = NOISE):
    """While inside, lines written to file descriptor 2 (by C++ code as well as Python)
    pass through a thread that drops those containing one of ``noise``.

    Unset with ``DETECTLAB_TF_LOGS=1``. Lines still queued at exit are forwarded before
    the original stderr is restored.
    """
    if os.environ.get("DETECTLAB_TF_LOGS"):
        yield
        return
    sys.stderr.flush()
    saved = os.dup(2)
    read_end, write_end = os.pipe()
    os.dup2(write_end, 2)
    os.close(write_end)

    def forward():
        with os.fdopen(read_end, "rb") as pipe:
            for line in pipe:
                if not any(n in line for n in noise):
                    os.write(saved, line)

    thread = threading.Thread(target=forward, name="stderr-filter", daemon=True)
    thread.start()
    try:
        yield
    finally:
        sys.stderr.flush()
        os.dup2(saved, 2)  # closes this process's last write end of the pipe: the thread sees EOF
        thread.join(timeout=2.0)  # (worker processes still holding it end with us)
        os.close(saved)
