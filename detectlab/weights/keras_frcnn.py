"""keras-frcnn's ``model_frcnn.hdf5``: the names its files give our layers.

keras-frcnn saves ``model_all.save_weights(...)`` (Keras 2 by-name layout). Its layers carry
the names ours have (``block1_conv1`` ... / ``conv1``, ``bn_conv1``, ``res5a_branch2a`` ...,
``rpn_conv1``, ``rpn_out_class``, ``rpn_out_regress``, ``dense_class_{K}``,
``dense_regress_{K}``), with two exceptions handled here:

- the VGG16 classifier wraps ``fc1`` and ``fc2`` as ``TimeDistributed(Dense(..., name='fc1'))``
  without naming the wrapper, so the file holds them under auto names
  (``time_distributed_2``, ``time_distributed_4``; the flatten and dropout wrappers have no
  weights): the weighted auto-named wrappers, in creation order, are ``fc1`` then ``fc2``;
- its ``FixedBatchNormalization`` stores ``gamma, beta, running_mean, running_std`` where
  ``running_std`` is used as the variance (epsilon 1e-3), i.e. Keras' batch-norm weights in
  Keras' order: nothing to convert.
"""

from __future__ import annotations

import re

import numpy as np

_WRAPPER = re.compile(r"time_distributed(?:_(\d+))?$")
VGG_FC = ("fc1", "fc2")


def name_vgg_fc_wrappers(weights: dict[str, list[np.ndarray]], model_names) -> dict[str, list[np.ndarray]]:
    """``weights`` with keras-frcnn's auto-named fc wrappers renamed ``fc1``, ``fc2`` when the
    model has those layers and the file does not; otherwise ``weights`` unchanged."""
    if not set(VGG_FC) <= set(model_names) or set(VGG_FC) & set(weights):
        return weights
    wrappers = sorted((int(m.group(1) or 0), name) for name in weights if (m := _WRAPPER.match(name)))
    if len(wrappers) != len(VGG_FC):
        return weights
    out = {k: v for k, v in weights.items() if not _WRAPPER.match(k)}
    out.update({fc: weights[name] for fc, (_, name) in zip(VGG_FC, wrappers)})
    return out
