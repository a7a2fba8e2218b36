"""Mask R-CNN heads with matterport's layer names.

- RPN, one set of weights shared by every pyramid level: ``rpn_conv_shared`` (3x3, 512 =
  2x the FPN width, ReLU) -> ``rpn_class_raw`` (1x1, 2A logits: background, object) and ``rpn_bbox_pred``
  (1x1, 4A: ``(dy, dx, dh, dw) / std`` per anchor). Levels are concatenated in the anchor
  order of :func:`detectlab.anchor_pyramid.pyramid_anchors`.
- Box head on 7x7 pyramid crops: ``mrcnn_class_conv1`` (7x7 valid, 1024, an FC layer in
  conv form) + ``mrcnn_class_bn1``, ``mrcnn_class_conv2`` (1x1, 1024) + ``mrcnn_class_bn2``,
  then ``mrcnn_class_logits`` (C + 1, background first) and ``mrcnn_bbox_fc`` (4 (C + 1)).
- Mask head on 14x14 crops: four ``mrcnn_mask_conv{k}`` (3x3, 256) + ``mrcnn_mask_bn{k}``,
  ``mrcnn_mask_deconv`` (2x2 stride 2, 256; both widths follow the FPN's) and ``mrcnn_mask`` (1x1, C + 1, sigmoid) -> 28x28.
Per-ROI layers run on ``(B * R, ...)`` tensors (:class:`MergeRois`/:class:`SplitRois`),
which is what the reference's ``TimeDistributed`` wrappers did. Each convolution + batch
norm pair is one :class:`~detectlab.layers.conv_batch_norm.ConvBatchNorm`.

Under mixed precision the output layers compute in the policy's dtype like the rest, and the
layers after them (reshapes, concatenations, the RPN softmax) are float32, so every output
reaches the loss in float32. Computing ``rpn_class_raw``/``rpn_bbox_pred`` and ``mrcnn_mask``
in float32 instead would cast their large inputs (512 channels at every pyramid level; 256
channels on each mask ROI's 28x28 map) to float32 and their input gradients back, forward
and backward, for a few output channels.
"""

from __future__ import annotations

import keras
import tensorflow as tf
from keras import layers

from detectlab.heads.faster_rcnn import MergeRois, SplitRois
from detectlab.layers.conv import AdaptiveConv2D, AdaptiveConv2DTranspose
from detectlab.layers.conv_batch_norm import conv_bn
from detectlab.layers.pyramid_roi_align import PyramidRoiAlign


def rpn_head(pyramid, num_anchors: int, channels: int = 512):
    """``[P2..P6]`` -> ``logits (B, N, 2)``, ``probs (B, N, 2)``, ``deltas (B, N, 4)``."""
    shared = AdaptiveConv2D(channels, 3, padding="same", activation="relu", name="rpn_conv_shared")
    classes = AdaptiveConv2D(2 * num_anchors, 1, name="rpn_class_raw")
    boxes = AdaptiveConv2D(4 * num_anchors, 1, name="rpn_bbox_pred")
    logits, deltas = [], []
    for level, p in enumerate(pyramid, start=2):
        x = shared(p)
        logits.append(layers.Reshape((-1, 2), name=f"rpn_class_logits_p{level}", dtype="float32")(classes(x)))
        deltas.append(layers.Reshape((-1, 4), name=f"rpn_bbox_p{level}", dtype="float32")(boxes(x)))
    logits = layers.Concatenate(axis=1, name="rpn_class_logits", dtype="float32")(logits)
    probs = layers.Softmax(name="rpn_class", dtype="float32")(logits)
    return logits, probs, layers.Concatenate(axis=1, name="rpn_deltas", dtype="float32")(deltas)


def box_head(rois, pyramid, num_classes: int, image_size: int, pool_size: int = 7, fc: int = 1024, train_bn: bool = False):
    """``rois (B, R, 4)`` -> ``logits (B, R, C+1)``, ``probs``, ``deltas (B, R, C+1, 4)``."""
    x = PyramidRoiAlign(pool_size, image_size, name="roi_align_classifier")(rois, pyramid[:4])
    x = MergeRois(name="mrcnn_class_merge_rois")(x)
    x = conv_bn(x, fc, pool_size, "mrcnn_class_conv1", "mrcnn_class_bn1", train_bn, padding="valid")
    x = layers.Activation("relu", name="mrcnn_class_relu1")(x)
    x = conv_bn(x, fc, 1, "mrcnn_class_conv2", "mrcnn_class_bn2", train_bn)
    x = layers.Activation("relu", name="mrcnn_class_relu2")(x)
    x = layers.Reshape((fc,), name="pool_squeeze")(x)
    x = SplitRois(name="mrcnn_class_split_rois")(x, rois)
    k = num_classes + 1
    logits = layers.Dense(k, name="mrcnn_class_logits", dtype="float32")(x)
    probs = layers.Softmax(name="mrcnn_class")(logits)
    deltas = layers.Dense(4 * k, name="mrcnn_bbox_fc", dtype="float32")(x)
    return logits, probs, layers.Reshape((-1, k, 4), name="mrcnn_bbox", dtype="float32")(deltas)


def mask_head(rois, pyramid, num_classes: int, image_size: int, pool_size: int = 14, train_bn: bool = False,
              channels: int = 256):
    """``rois (B, R, 4)`` -> ``masks (B, R, 2P, 2P, C+1)`` probabilities."""
    x = PyramidRoiAlign(pool_size, image_size, name="roi_align_mask")(rois, pyramid[:4])
    x = MergeRois(name="mrcnn_mask_merge_rois")(x)
    for k in range(1, 5):
        x = conv_bn(x, channels, 3, f"mrcnn_mask_conv{k}", f"mrcnn_mask_bn{k}", train_bn, padding="same")
        x = layers.Activation("relu", name=f"mrcnn_mask_relu{k}")(x)
    x = AdaptiveConv2DTranspose(channels, 2, strides=2, activation="relu", name="mrcnn_mask_deconv")(x)
    x = AdaptiveConv2D(num_classes + 1, 1, activation="sigmoid", name="mrcnn_mask")(x)
    return SplitRois(name="mrcnn_mask_split_rois", dtype="float32")(x, rois)


@keras.saving.register_keras_serializable(package="detectlab")
class LeadingRois(keras.layers.Layer):
    """``x (B, T, ...)`` -> ``x[:, :count]``: the positive ROIs, which the detection-target
    layer puts first (the mask head only trains on those)."""

    def __init__(self, count: int, **kwargs):
        super().__init__(**kwargs)
        self.count = int(count)

    def call(self, x):
        return x[:, : self.count]

    def compute_output_shape(self, shape):
        return (shape[0], None, *shape[2:])  # dynamic, so the mask head takes any ROI count

    def get_config(self):
        return {**super().get_config(), "count": self.count}


@keras.saving.register_keras_serializable(package="detectlab")
class ClassMasks(keras.layers.Layer):
    """``masks (B, K, S, S, C+1)``, ``class_ids (B, K)`` (1..C) -> each detection's own class
    mask ``(B, K, S, S)``."""

    def call(self, masks, class_ids):
        masks = tf.transpose(tf.cast(masks, tf.float32), [0, 1, 4, 2, 3])  # (B, K, C+1, S, S)
        return tf.gather(masks, tf.cast(class_ids, tf.int32), axis=2, batch_dims=2)

    def compute_output_spec(self, masks, class_ids):
        return keras.KerasTensor(tuple(masks.shape[:4]), "float32")


@keras.saving.register_keras_serializable(package="detectlab")
class ClassIndex(keras.layers.Layer):
    """Head class ids ``1..C`` (0 = background) -> the framework's contiguous ``0..C-1``."""

    def call(self, class_ids):
        return tf.cast(class_ids, tf.int32) - 1

    def compute_output_spec(self, class_ids):
        return keras.KerasTensor(class_ids.shape, "int32")
