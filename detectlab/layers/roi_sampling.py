"""Faster R-CNN's ROI sampling for the classifier step, in-graph (keras-frcnn ``calc_iou`` +
sampling), so that it runs on each replica's proposals under ``tf.distribute``.

Boxes are ``y1, x1, y2, x2`` normalised to the input image. Every random choice for an image
is drawn from its own seed (the loader's per-image ``sample_seeds``) with stateless ops, so
an image gets the same ROIs whichever replica (or single device) samples it.
"""

from __future__ import annotations

import tensorflow as tf

from detectlab.box_coding import DeltaCoder
from detectlab.layers.box_ops import iou


class RoiSampler:
    """ROIs with best IoU < ``bg_low`` against the image's ground truth are dropped, ``[bg_low,
    fg_iou)`` are background, ``>= fg_iou`` foreground; ``num_rois`` per image, at most half
    foreground (a random subset), the rest background (a random subset, drawn with
    replacement when there are too few; foreground when there is no background). With
    ``add_gt`` the ground-truth boxes join the proposals. ``coder``: the classifier's
    :class:`DeltaCoder`.
    """

    def __init__(self, num_classes: int, coder: DeltaCoder, num_rois: int = 32, fg_iou: float = 0.5,
                 bg_low: float = 0.1, add_gt: bool = True):
        self.num_classes, self.num_rois = int(num_classes), int(num_rois)
        self.fg_iou, self.bg_low, self.add_gt = float(fg_iou), float(bg_low), bool(add_gt)
        self.coder = DeltaCoder.from_config(coder)

    def __call__(self, proposals, counts, gt_boxes, gt_class_ids, seeds) -> dict:
        """``proposals (B, K, 4)`` (the first ``counts (B,)`` rows real), ``gt_boxes (B, M, 4)``,
        ``gt_class_ids (B, M)`` (-1 padding), ``seeds (B,)`` int -> the classifier's inputs and
        targets (``R = num_rois``, ``C`` classes):

        - ``rois (B, R, 4)``; ``classes (B, R, C+1)`` one-hot, background last, all-zero rows
          for an image without a usable ROI; ``regress (B, R, 8C)`` = ``[class mask x4 | coded
          targets]`` (foreground rows only);
        - ``positives``, ``negatives``, ``unusable_images``: int32 counts over the batch.
        """
        r, c = self.num_rois, self.num_classes
        inputs = (tf.cast(proposals, tf.float32), tf.cast(counts, tf.int32), tf.cast(gt_boxes, tf.float32),
                  tf.cast(gt_class_ids, tf.int32), tf.cast(seeds, tf.int64))
        signature = (tf.TensorSpec([r, 4], tf.float32), tf.TensorSpec([r, c + 1], tf.float32),
                     tf.TensorSpec([r, 8 * c], tf.float32), tf.TensorSpec([2], tf.int32))
        rois, classes, regress, tally = tf.map_fn(lambda x: self._image(*x), inputs, fn_output_signature=signature)
        positives, negatives = tf.unstack(tf.reduce_sum(tally, axis=0))
        unusable = tf.reduce_sum(tf.cast(tf.reduce_sum(tally, axis=1) == 0, tf.int32))
        return {"rois": rois, "classes": classes, "regress": regress, "positives": positives,
                "negatives": negatives, "unusable_images": unusable}

    def _image(self, proposals, count, gt_boxes, gt_class_ids, seed):
        """One image -> ``rois (R, 4)``, ``classes (R, C+1)``, ``regress (R, 8C)``, ``[fg, bg]``."""
        r, c = self.num_rois, self.num_classes
        real_gt = gt_class_ids >= 0
        candidates, valid = proposals, tf.range(tf.shape(proposals)[0]) < count
        if self.add_gt:
            candidates, valid = tf.concat([candidates, gt_boxes], 0), tf.concat([valid, real_gt], 0)
        # at least R rows, so a fixed-size top-k can always be taken
        pad = tf.maximum(r - tf.shape(candidates)[0], 0)
        candidates, valid = tf.pad(candidates, [[0, pad], [0, 0]]), tf.pad(valid, [[0, pad]])
        n = tf.shape(candidates)[0]

        overlaps = tf.where(real_gt[None, :], iou(candidates[:, None, :], gt_boxes[None, :, :]), -1.0)  # (N, M)
        best = tf.argmax(overlaps, axis=1, output_type=tf.int32)
        best_iou = tf.where(valid, tf.reduce_max(overlaps, axis=1), -1.0)
        fg = best_iou >= self.fg_iou
        bg = (best_iou >= self.bg_low) & (best_iou < self.fg_iou)
        fg_count, bg_count = tf.reduce_sum(tf.cast(fg, tf.int32)), tf.reduce_sum(tf.cast(bg, tf.int32))

        fg_keys, bg_keys, draws = tf.unstack(tf.random.stateless_uniform([3, n], seed=tf.stack([seed, 0])))
        fg_order = tf.math.top_k(tf.where(fg, fg_keys, -1.0), k=r).indices  # random foreground first
        n_fg = tf.minimum(fg_count, r // 2)
        pool = tf.where(bg_count > 0, bg, fg)
        pool_size = tf.reduce_sum(tf.cast(pool, tf.int32))
        without = tf.math.top_k(tf.where(pool, bg_keys, -1.0), k=r).indices  # a random subset of the pool
        members = tf.concat([tf.cast(tf.where(pool)[:, 0], tf.int32), [0]], 0)  # + a guard for an empty pool
        drawn = tf.cast(draws[:r] * tf.cast(tf.maximum(pool_size, 1), tf.float32), tf.int32)
        with_replacement = tf.gather(members, tf.minimum(drawn, tf.maximum(pool_size - 1, 0)))
        rest = tf.where(pool_size >= r - n_fg, without, with_replacement)

        slot = tf.range(r)
        picked = tf.where(slot < n_fg, fg_order, tf.gather(rest, tf.maximum(slot - n_fg, 0)))
        rois = tf.gather(candidates, picked)
        matched = tf.gather(best, picked)
        is_fg = tf.gather(fg, picked)  # background rows are foreground only when background ran out
        labels = tf.where(is_fg, tf.gather(gt_class_ids, matched), c)
        usable = (fg_count + bg_count > 0) & tf.reduce_any(real_gt)

        keep = tf.cast(usable, tf.float32)
        classes = tf.one_hot(labels, c + 1) * keep
        fg_rows = tf.cast(is_fg & usable, tf.float32)[:, None]
        class_mask = tf.repeat(tf.one_hot(labels, c), 4, axis=-1) * fg_rows  # (R, 4C): the label's 4 slots
        deltas = self.coder.encode(rois, tf.gather(gt_boxes, matched))
        deltas = tf.where(fg_rows > 0, deltas, 0.0)  # degenerate background rows code to inf/nan
        regress = tf.concat([class_mask, tf.tile(deltas, [1, c]) * class_mask], axis=-1)
        positives = tf.where(usable, tf.reduce_sum(tf.cast(is_fg, tf.int32)), 0)
        tally = tf.stack([positives, tf.where(usable, r - positives, 0)])
        return rois * keep, classes, regress, tally
