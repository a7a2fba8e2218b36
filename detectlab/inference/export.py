"""Export a trained model as a self-contained SavedModel (plain TensorFlow serves it).

The exported graph does what :class:`~detectlab.inference.predictor.Predictor` does around
the family's ``inference_model``: letterbox in, un-letterbox the boxes, paste the masks
to full size. Signatures (all for one image; outputs sliced to the detections found):

- ``serving_default(image)``: ``image uint8 (H, W, 3)`` RGB, any size;
- ``serving_bytes(image_bytes)``: an encoded JPEG / PNG / BMP / GIF string;
- ``detect(image, score_threshold, nms_threshold)`` and ``detect_bytes(...)``: the same with
  the thresholds as inputs (a SavedModel signature input cannot have a default, so the
  first two use the recipe's values).

Outputs: ``boxes (K, 4) float32`` **x1, y1, x2, y2** in the input image's pixels,
``scores (K,)``, ``class_ids (K,) int32`` (0..C-1), ``class_names (K,) string``,
``num_detections ()`` int32, and for Mask R-CNN ``masks (K, H, W) uint8`` (0/1).
"""

from __future__ import annotations

import json
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

from detectlab.data.transforms import GREY

EXPORT_INFO = "detectlab_export.json"


# -- the pieces of Predictor, in-graph ----------------------------------------------------

def letterbox_graph(image, size: int):
    """``image uint8 (H, W, 3)`` -> ``float32 (size, size, 3)`` letterboxed on grey and its
    ``transform (4,)`` ``sy, sx, ty, tx`` (original ``(y, x)`` -> ``(sy*y + ty, sx*x + tx)``).

    The same warp as :func:`detectlab.data.transforms.letterbox` (bilinear, pixel centres at
    ``i + 0.5``, constant grey border), so the network sees the same pixels (up to rounding).
    """
    hw = tf.cast(tf.shape(image)[:2], tf.float32)
    scale = tf.reduce_min(size / hw)
    ty, tx = tf.unstack((size - hw * scale) / 2)
    # output pixel (x, y) reads input ((x + 0.5 - tx) / s - 0.5, (y + 0.5 - ty) / s - 0.5)
    inverse = tf.stack([1 / scale, 0.0, (0.5 - tx) / scale - 0.5, 0.0, 1 / scale, (0.5 - ty) / scale - 0.5, 0.0, 0.0])
    warped = tf.raw_ops.ImageProjectiveTransformV3(
        images=tf.cast(image, tf.float32)[None], transforms=inverse[None], output_shape=tf.constant([size, size]),
        fill_value=float(GREY), interpolation="BILINEAR", fill_mode="CONSTANT")[0]
    return tf.round(warped), tf.stack([scale, scale, ty, tx])


def unletterbox_graph(boxes, transform, shape_hw):
    """``boxes (K, 4)`` y1 x1 y2 x2 pixels of the letterboxed frame -> the original image's,
    clipped to it (as :func:`detectlab.inference.predictor.unletterbox`)."""
    sy, sx, ty, tx = tf.unstack(transform)
    h, w = tf.unstack(tf.cast(shape_hw, tf.float32))
    y1, x1, y2, x2 = tf.unstack(boxes, axis=-1)
    ys = [tf.clip_by_value((v - ty) / sy, 0.0, h) for v in (y1, y2)]
    xs = [tf.clip_by_value((v - tx) / sx, 0.0, w) for v in (x1, x2)]
    return tf.stack([ys[0], xs[0], ys[1], xs[1]], axis=-1)


def paste_masks_graph(masks, boxes, shape_hw, threshold: float = 0.5):
    """``masks (K, m, m)`` probabilities in each box's frame, ``boxes (K, 4)`` y1 x1 y2 x2 in
    image pixels -> ``uint8 (K, H, W)`` 0/1 masks (as :func:`detectlab.inference.predictor.paste_masks`:
    the box is widened to whole pixels and the mask resized bilinearly, half-pixel centres)."""
    masks = tf.cast(masks, tf.float32)
    m = tf.shape(masks)[-1]
    y1, x1, y2, x2 = tf.unstack(boxes, axis=-1)
    top, left = tf.floor(y1), tf.floor(x1)
    bottom, right = tf.maximum(tf.math.ceil(y2), top + 1), tf.maximum(tf.math.ceil(x2), left + 1)
    rows = _resize_weights(top, bottom, shape_hw[0], m)  # (K, H, m)
    cols = _resize_weights(left, right, shape_hw[1], m)  # (K, W, m)
    pasted = tf.einsum("kyi,kij,kxj->kyx", rows, masks, cols)
    return tf.cast(pasted >= threshold, tf.uint8)


def _resize_weights(start, stop, length, m):
    """Bilinear weights ``(K, length, m)`` of mask cells for pixels ``start <= p < stop`` (0 elsewhere)."""
    mf = tf.cast(m, tf.float32)
    p = tf.range(tf.cast(length, tf.float32))[None] - start[:, None]  # (K, length) offset in the box
    u = tf.clip_by_value((p + 0.5) * mf / (stop - start)[:, None] - 0.5, 0.0, mf - 1)
    i0 = tf.floor(u)
    frac = u - i0
    i0 = tf.cast(i0, tf.int32)
    i1 = tf.minimum(i0 + 1, m - 1)
    inside = tf.cast((p >= 0) & (p < (stop - start)[:, None]), tf.float32)
    weights = tf.one_hot(i0, m) * (1 - frac)[..., None] + tf.one_hot(i1, m) * frac[..., None]
    return weights * inside[..., None]


# -- the serving module ----------------------------------------------------------------------

def serving_functions(model, image_size: int, score_threshold: float, nms_threshold: float, max_detections: int) -> dict:
    """The four signature functions (``tf.function`` with input signatures), by name."""
    network = model.inference_model(score_threshold, nms_threshold, max_detections, threshold_input=True)
    names = tf.constant(model.class_names)
    defaults = (float(score_threshold), float(nms_threshold))

    def detect_one(image, score, nms):
        image = tf.ensure_shape(image, [None, None, 3])
        shape_hw = tf.shape(image)[:2]
        letterboxed, transform = letterbox_graph(image, image_size)
        thresholds = tf.reshape(tf.stack([tf.cast(score, tf.float32), tf.cast(nms, tf.float32)]), [1, 2])
        result = network([letterboxed[None], thresholds], training=False)
        n = result["valid"][0]
        boxes = unletterbox_graph(result["boxes"][0, :n] * image_size, transform, shape_hw)
        class_ids = tf.cast(result["class_ids"][0, :n], tf.int32)
        out = {
            "boxes": tf.gather(boxes, [1, 0, 3, 2], axis=-1),  # x1 y1 x2 y2
            "scores": result["scores"][0, :n],
            "class_ids": class_ids,
            "class_names": tf.gather(names, class_ids),
            "num_detections": n,
        }
        if "masks" in result:
            out["masks"] = paste_masks_graph(result["masks"][0, :n], boxes, shape_hw)
        return out

    def decode(image_bytes):
        return tf.io.decode_image(image_bytes, channels=3, dtype=tf.uint8, expand_animations=False)

    image_spec = tf.TensorSpec([None, None, 3], tf.uint8, name="image")
    bytes_spec = tf.TensorSpec([], tf.string, name="image_bytes")
    score_spec = tf.TensorSpec([], tf.float32, name="score_threshold")
    nms_spec = tf.TensorSpec([], tf.float32, name="nms_threshold")
    return {
        "serving_default": tf.function(lambda image: detect_one(image, *defaults), input_signature=[image_spec]),
        "serving_bytes": tf.function(lambda image_bytes: detect_one(decode(image_bytes), *defaults),
                                     input_signature=[bytes_spec]),
        "detect": tf.function(detect_one, input_signature=[image_spec, score_spec, nms_spec]),
        "detect_bytes": tf.function(lambda image_bytes, score_threshold, nms_threshold:
                                    detect_one(decode(image_bytes), score_threshold, nms_threshold),
                                    input_signature=[bytes_spec, score_spec, nms_spec]),
    }, network


def export_saved_model(model, out: str | Path, image_size: int, score_threshold: float, nms_threshold: float,
                       max_detections: int, family: str = "") -> Path:
    """Write ``out`` (a SavedModel folder) and ``out/detectlab_export.json`` (what was exported)."""
    out = Path(out)
    functions, network = serving_functions(model, image_size, score_threshold, nms_threshold, max_detections)
    archive = keras.export.ExportArchive()
    archive.track(network)
    for name, fn in functions.items():
        archive.add_endpoint(name, fn)
    archive.write_out(str(out), verbose=False)
    info = {"format": "saved_model", "family": family, "image_size": int(image_size), "class_names": list(model.class_names),
            "score_threshold": float(score_threshold), "nms_threshold": float(nms_threshold),
            "max_detections": int(max_detections), "signatures": sorted(functions)}
    (out / EXPORT_INFO).write_text(json.dumps(info, indent=2))
    return out


def saved_model_predict(loaded, image: np.ndarray, signature: str = "serving_default", **kwargs) -> dict:
    """Run one image through a loaded SavedModel signature -> numpy outputs."""
    return {k: v.numpy() for k, v in loaded.signatures[signature](image=tf.constant(image), **kwargs).items()}
