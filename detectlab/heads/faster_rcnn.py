"""Faster R-CNN heads with keras-frcnn's layer names.

- RPN: ``rpn_conv1`` (3x3, 512, ReLU) -> ``rpn_out_class`` (1x1, A, sigmoid) and
  ``rpn_out_regress`` (1x1, 4A, linear; per anchor ``tx, ty, tw, th``).
- Classifier on pooled ROIs ``(B, R, P, P, C)``: VGG16 -> flatten, ``fc1``/``fc2`` (4096,
  ReLU, dropout 0.5); ResNet -> stage 5 (``res5a`` ...) on 14x14 crops + 7x7 average pool.
  Then ``dense_class_{K}`` (softmax over K = classes + background, background last) and
  ``dense_regress_{K}`` (4 (K-1) outputs). Outputs run in float32 under mixed precision.
"""

from __future__ import annotations

import keras
import tensorflow as tf
from keras import layers

from detectlab.backbones.resnet import resnet_stage
from detectlab.layers.conv import AdaptiveConv2D


def rpn_head(features, num_anchors: int, channels: int = 512):
    x = AdaptiveConv2D(channels, 3, padding="same", activation="relu",
                       kernel_initializer=keras.initializers.RandomNormal(stddev=0.01), name="rpn_conv1")(features)
    scores = AdaptiveConv2D(num_anchors, 1, activation="sigmoid", kernel_initializer="uniform",
                            name="rpn_out_class", dtype="float32")(x)
    deltas = AdaptiveConv2D(4 * num_anchors, 1, kernel_initializer="zeros", name="rpn_out_regress", dtype="float32")(x)
    return scores, deltas


@keras.saving.register_keras_serializable(package="detectlab")
class MergeRois(keras.layers.Layer):
    """``(B, R, ...)`` -> ``(B * R, ...)``, so per-ROI layers are plain layers."""

    def call(self, x):
        shape = tf.shape(x)
        return tf.reshape(x, tf.concat([[shape[0] * shape[1]], shape[2:]], 0))

    def compute_output_shape(self, shape):
        return (None, *shape[2:])


@keras.saving.register_keras_serializable(package="detectlab")
class SplitRois(keras.layers.Layer):
    """``(B * R, F)`` back to ``(B, R, F)`` with B, R taken from the ROI tensor."""

    def call(self, x, rois):
        shape = tf.shape(rois)
        return tf.reshape(x, tf.concat([shape[:2], tf.shape(x)[1:]], 0))

    def compute_output_shape(self, x_shape, rois_shape):
        return (rois_shape[0], rois_shape[1], *x_shape[1:])


def vgg_classifier(pooled, rois, width: float = 1.0, dropout: float = 0.5):
    p, c = pooled.shape[2], pooled.shape[4]
    x = layers.Reshape((-1, p * p * c), name="flatten")(pooled)
    for name in ("fc1", "fc2"):
        x = layers.Dense(max(1, int(round(4096 * width))), activation="relu", name=name)(x)
        if dropout:
            x = layers.Dropout(dropout, name=f"{name}_dropout")(x)
    return x


def resnet_classifier(pooled, rois, width: float = 1.0, train_bn: bool = False, blocks: int = 3):
    x = MergeRois(name="merge_rois")(pooled)
    x = resnet_stage(x, 5, blocks, width, strides=2, train_bn=train_bn)
    x = layers.GlobalAveragePooling2D(name="avg_pool")(x)
    return SplitRois(name="split_rois")(x, rois)


def box_outputs(x, num_classes: int):
    """``(class probabilities (B, R, K), deltas (B, R, 4 (K-1)))`` with K = classes + 1."""
    k = num_classes + 1
    scores = layers.Dense(k, activation="softmax", name=f"dense_class_{k}", dtype="float32")(x)
    deltas = layers.Dense(4 * num_classes, kernel_initializer="zeros", name=f"dense_regress_{k}", dtype="float32")(x)
    return scores, deltas
