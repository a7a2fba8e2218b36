"""Mask R-CNN training targets for the heads, in-graph (matterport ``DetectionTargetLayer``).

Conventions: boxes ``y1, x1, y2, x2`` normalised to the input image; class id ``0`` is
background / padding, ``1..C`` objects, negative ids mark crowd boxes (COCO ``iscrowd``);
deltas are coded by the head's :class:`~detectlab.box_coding.DeltaCoder` (centre offsets over
the ROI's size and log size ratios, scaled).
"""

from __future__ import annotations

import keras
import tensorflow as tf

from detectlab.box_coding import DeltaCoder
from detectlab.layers.box_ops import iou


def _shuffled(values, seed):
    """``values (n,)`` in a random order drawn from ``seed`` (shape ``(2,)``), statelessly."""
    keys = tf.random.stateless_uniform(tf.shape(values), seed=seed)
    return tf.gather(values, tf.argsort(keys))


@keras.saving.register_keras_serializable(package="detectlab")
class DetectionTargets(keras.layers.Layer):
    """Sample ROIs among proposals and build their class, box and mask targets.

    Inputs: ``proposals (B, N, 4)`` (all-zero rows are padding), ``gt_class_ids (B, M)`` int,
    ``gt_boxes (B, M, 4)``, with ``mask_size`` set ``gt_masks (B, M, S, S)`` mini-masks (each
    GT's mask cropped to its box and resized to ``S x S``, values 0/1; ``None`` otherwise), and
    ``seeds (B,)`` int: each image's seed (the loader's ``sample_seeds``; default 0). The random
    subsets are drawn from it with stateless ops, so an image gets the same ROIs whichever
    replica (or single device) samples it.

    Outputs (``T = train_rois``): ``rois (B, T, 4)``, ``target_class_ids (B, T) int32``,
    ``target_deltas (B, T, 4)``, and with ``mask_size`` set ``target_masks (B, T, mask_size,
    mask_size)`` float 0/1; positives first, then negatives, then zero padding.
    ``mask_size=None`` (Faster R-CNN FPN) takes no masks and returns the first three.

    Rules (matterport): a proposal is positive when its best IoU with a non-crowd GT is
    ``>= positive_iou`` and negative when below it and its IoU with every crowd box is
    ``< crowd_iou``. At most ``round(T * roi_positive_ratio)`` positives (random subset), then
    ``int(positives / roi_positive_ratio) - positives`` negatives (random subset; so an image
    without positives gets no negatives either, as in matterport). A positive's mask target is
    its GT's mini-mask cropped at the ROI's coordinates in the GT box's frame, bilinearly
    resized to ``mask_size`` and rounded. ``add_gt_as_proposals`` (default ``False``, as in
    matterport) appends the non-crowd GT boxes to the proposals before sampling.
    No gradient flows through this layer. Works per image with ``tf.map_fn``.
    """

    def __init__(self, train_rois: int = 200, roi_positive_ratio: float = 0.33, positive_iou: float = 0.5,
                 crowd_iou: float = 0.001, coder=None, mask_size: int | None = 28, add_gt_as_proposals: bool = False,
                 **kwargs):
        kwargs.setdefault("autocast", False)
        super().__init__(**kwargs)
        self.supports_jit = False  # CropAndResize, boolean masks, shuffles: no XLA kernels
        self.train_rois = int(train_rois)
        self.roi_positive_ratio = float(roi_positive_ratio)
        self.positive_iou, self.crowd_iou = float(positive_iou), float(crowd_iou)
        self.coder = DeltaCoder.from_config(coder)
        self.mask_size = None if mask_size is None else int(mask_size)
        self.add_gt_as_proposals = bool(add_gt_as_proposals)

    @property
    def max_positives(self) -> int:
        return int(round(self.train_rois * self.roi_positive_ratio))

    def call(self, proposals, gt_class_ids, gt_boxes, gt_masks=None, seeds=None):
        if seeds is None:
            seeds = tf.zeros(tf.shape(proposals)[:1], tf.int64)
        inputs = (tf.stop_gradient(tf.cast(proposals, tf.float32)), tf.cast(gt_class_ids, tf.int32),
                  tf.stop_gradient(tf.cast(gt_boxes, tf.float32)), tf.cast(seeds, tf.int64))
        t, m = self.train_rois, self.mask_size
        signature = (tf.TensorSpec([t, 4], tf.float32), tf.TensorSpec([t], tf.int32), tf.TensorSpec([t, 4], tf.float32))
        if m is not None:
            inputs += (tf.stop_gradient(tf.cast(gt_masks, tf.float32)),)
            signature += (tf.TensorSpec([t, m, m], tf.float32),)
        return tf.map_fn(lambda x: self._image_targets(*x), inputs, fn_output_signature=signature)

    def _image_targets(self, proposals, class_ids, gt_boxes, seed, gt_masks=None):
        """One image: ``proposals (N, 4)``, ``class_ids (M,)``, ``gt_boxes (M, 4)``, ``seed``
        int64, ``gt_masks (M, S, S)`` (with ``mask_size``)."""
        proposals = tf.boolean_mask(proposals, tf.reduce_any(tf.not_equal(proposals, 0.0), axis=-1))
        is_object = class_ids > 0
        is_crowd = class_ids < 0
        if self.add_gt_as_proposals:
            proposals = tf.concat([proposals, tf.boolean_mask(gt_boxes, is_object)], 0)

        overlaps = iou(proposals[:, None, :], gt_boxes[None, :, :])  # (N, M)
        object_iou = tf.where(is_object[None, :], overlaps, -1.0)
        crowd_iou = tf.reduce_max(tf.where(is_crowd[None, :], overlaps, 0.0), axis=1)
        best_iou = tf.reduce_max(object_iou, axis=1)
        positive = tf.where(best_iou >= self.positive_iou)[:, 0]
        negative = tf.where(tf.logical_and(best_iou < self.positive_iou, crowd_iou < self.crowd_iou))[:, 0]

        positive = _shuffled(positive, tf.stack([seed, 1]))[: self.max_positives]
        num_pos = tf.shape(positive)[0]
        # float64 so that e.g. 66 / 0.33 gives 200, not 199.99998
        num_neg = tf.cast(tf.cast(num_pos, tf.float64) / self.roi_positive_ratio, tf.int32) - num_pos
        num_neg = tf.minimum(num_neg, self.train_rois - num_pos)
        negative = _shuffled(negative, tf.stack([seed, 2]))[:num_neg]
        num_neg = tf.shape(negative)[0]

        pos_rois = tf.gather(proposals, positive)
        matched = tf.argmax(tf.gather(object_iou, positive), axis=1, output_type=tf.int32)
        matched_boxes = tf.gather(gt_boxes, matched)
        deltas = self.coder.encode(pos_rois, matched_boxes)

        pad = self.train_rois - num_pos - num_neg
        rois = tf.pad(tf.concat([pos_rois, tf.gather(proposals, negative)], 0), [[0, pad], [0, 0]])
        target_ids = tf.pad(tf.gather(class_ids, matched), [[0, num_neg + pad]])
        deltas = tf.pad(deltas, [[0, num_neg + pad], [0, 0]])
        if self.mask_size is None:
            return rois, target_ids, deltas

        # the ROI in the matched GT box's frame (its mini-mask spans [0, 1] x [0, 1])
        gy1, gx1, gy2, gx2 = tf.unstack(matched_boxes, axis=-1)
        gh, gw = gy2 - gy1, gx2 - gx1
        frame = tf.stack([(pos_rois[:, 0] - gy1) / gh, (pos_rois[:, 1] - gx1) / gw,
                          (pos_rois[:, 2] - gy1) / gh, (pos_rois[:, 3] - gx1) / gw], axis=-1)
        masks = tf.image.crop_and_resize(gt_masks[..., None], frame, matched, [self.mask_size, self.mask_size])
        masks = tf.round(masks[..., 0])
        masks = tf.pad(masks, [[0, num_neg + pad], [0, 0], [0, 0]])
        return rois, target_ids, deltas, masks

    def compute_output_spec(self, proposals, gt_class_ids, gt_boxes, gt_masks=None, seeds=None):
        """The ROI axis is left dynamic (``None``), so heads built on these tensors also
        take other ROI counts (proposals, detections) at inference."""
        b, m = proposals.shape[0], self.mask_size
        boxes = (keras.KerasTensor((b, None, 4), "float32"), keras.KerasTensor((b, None), "int32"),
                 keras.KerasTensor((b, None, 4), "float32"))
        return boxes if m is None else boxes + (keras.KerasTensor((b, None, m, m), "float32"),)

    def get_config(self):
        return {**super().get_config(), "train_rois": self.train_rois, "roi_positive_ratio": self.roi_positive_ratio,
                "positive_iou": self.positive_iou, "crowd_iou": self.crowd_iou, "coder": self.coder.get_config(),
                "mask_size": self.mask_size, "add_gt_as_proposals": self.add_gt_as_proposals}
