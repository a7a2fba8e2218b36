"""Multi-level ROI Align over FPN features (matterport ``PyramidROIAlign``).

Each ROI is cropped from one level only, chosen by its size (:func:`roi_levels`), with
``tf.image.crop_and_resize`` (bilinear, box corners on the corner pixels' centres, the same
sampling as :func:`detectlab.layers.roi_align.crop_and_resize`). Boxes are ``(B, R, 4)``
``y1, x1, y2, x2`` normalised to the input image, so to every feature map.
"""

from __future__ import annotations

import keras
import tensorflow as tf

MIN_LEVEL, MAX_LEVEL = 2, 5
CANONICAL_SIZE = 224.0  # an ImageNet-sized ROI (224 px) maps to the canonical level 4


def roi_levels(boxes, image_size):
    """``boxes (..., 4)`` normalised -> ``(...) int32`` pyramid levels in 2..5.

    ``round(4 + log2(sqrt(h * w) * image_size / 224))`` with ``h, w`` the normalised sides
    (matterport's ``4 + log2(sqrt(h*w) / (224 / sqrt(image_area)))`` for a square image of
    ``image_size`` pixels). Degenerate (e.g. zero padding) boxes go to level 2.
    ``tf.round`` rounds halves to even, as in matterport.
    """
    boxes = tf.cast(boxes, tf.float32)
    area = tf.maximum((boxes[..., 2] - boxes[..., 0]) * (boxes[..., 3] - boxes[..., 1]), 1e-12)
    size = tf.sqrt(area) * tf.cast(image_size, tf.float32) / CANONICAL_SIZE
    level = 4.0 + tf.math.log(size) / tf.math.log(2.0)
    return tf.cast(tf.clip_by_value(tf.round(level), MIN_LEVEL, MAX_LEVEL), tf.int32)


def permute_rows(x, order):
    """``x[order]`` for a permutation ``order`` of ``x``'s rows. Its gradient is the inverse
    permutation (a gather), not the scatter-add that ``tf.gather``'s gradient becomes for
    arbitrary indices (an ``UnsortedSegmentSum`` over every crop)."""

    @tf.custom_gradient
    def run(rows):
        def grad(dy):
            return tf.gather(dy, tf.math.invert_permutation(order))

        return tf.gather(rows, order), grad

    return run(x)


@keras.saving.register_keras_serializable(package="detectlab")
class PyramidRoiAlign(keras.layers.Layer):
    """``boxes (B, R, 4)``, ``features [P2, P3, P4, P5]`` each ``(B, H_l, W_l, C)`` ->
    ``(B, R, P, P, C)`` in the boxes' order, in the features' dtype.

    ``image_size`` (pixels, square input) sets the level of each box; ``None`` takes
    ``4 * P2 height`` (P2 has stride 4). Gradients do not flow into the boxes (as in
    matterport: ROIs are treated as constants). Boxes are never autocast (float32).
    """

    def __init__(self, pool_size: int = 7, image_size: int | None = None, **kwargs):
        kwargs.setdefault("autocast", False)
        super().__init__(**kwargs)
        self.supports_jit = False  # CropAndResize and per-level gathers: no XLA kernels
        self.pool_size = int(pool_size)
        self.image_size = None if image_size is None else int(image_size)

    def call(self, boxes, features):
        features = list(features)
        if len(features) != MAX_LEVEL - MIN_LEVEL + 1:
            raise ValueError(f"PyramidRoiAlign needs {MAX_LEVEL - MIN_LEVEL + 1} feature maps (P2..P5), got {len(features)}")
        dtype = features[0].dtype
        boxes = tf.stop_gradient(tf.cast(boxes, tf.float32))
        shape = tf.shape(boxes)
        batch, rois = shape[0], shape[1]
        image_size = self.image_size if self.image_size is not None else 4 * tf.shape(features[0])[1]
        levels = roi_levels(boxes, image_size)  # (B, R)
        crops, positions = [], []
        for level, fmap in zip(range(MIN_LEVEL, MAX_LEVEL + 1), features):
            index = tf.where(tf.equal(levels, level))  # (n, 2): image, roi
            level_boxes = tf.gather_nd(boxes, index)
            image_index = tf.cast(index[:, 0], tf.int32)
            crop = tf.image.crop_and_resize(tf.cast(fmap, tf.float32), level_boxes, image_index,
                                            [self.pool_size, self.pool_size])
            crops.append(tf.cast(crop, dtype))
            positions.append(index[:, 0] * tf.cast(rois, tf.int64) + index[:, 1])
        order = tf.argsort(tf.concat(positions, 0))  # back to image-major, ROI order
        pooled = permute_rows(tf.concat(crops, 0), order)
        channels = features[0].shape[-1] if features[0].shape[-1] is not None else tf.shape(features[0])[-1]
        return tf.reshape(pooled, tf.stack([batch, rois, self.pool_size, self.pool_size, channels]))

    def compute_output_shape(self, boxes_shape, features_shape):
        return (boxes_shape[0], boxes_shape[1], self.pool_size, self.pool_size, features_shape[0][-1])

    def compute_output_spec(self, boxes, features):
        shape = self.compute_output_shape(boxes.shape, [f.shape for f in features])
        return keras.KerasTensor(shape, dtype=features[0].dtype)

    def get_config(self):
        return {**super().get_config(), "pool_size": self.pool_size, "image_size": self.image_size}
