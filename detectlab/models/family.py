"""What a model family registers in ``MODELS``: how to configure, build and feed it."""

from __future__ import annotations

import copy
import dataclasses
from dataclasses import dataclass
from typing import Any, Callable


@dataclass(frozen=True)
class ModelFamily:
    """One detection family (``yolov3``, ``faster_rcnn``, ``mask_rcnn``).

    - ``config_class``: the dataclass of the recipe's ``model`` section;
    - ``build(cfg, num_classes, class_weights, classes)``: the Keras model (``classes``:
      the data's ``(class names, category ids)``, saved with it);
    - ``make_encoder(cfg, num_classes)``: ``[Sample] -> (inputs, targets)`` for the generator;
    - ``check(model_cfg, source)``: raises ``ConfigError`` for inconsistent settings;
    - ``trainer``: the name of its trainer in :data:`detectlab.training.trainers.TRAINERS`
      (``"fit"``: generator-driven ``fit``; ``"alternating"``: the RPN/classifier
      ``train_on_batch`` loop, whose ROI sampler ``make_sampler(cfg, num_classes)`` gives);
    - ``with_masks``: whether training samples carry instance masks;
    - ``input_stride``: the model takes any square input size that is a multiple of it
      (multi-scale training); 0 when its input size is fixed at build time;
    - ``fit_anchors(cfg, dataset, loaded_layers, report, stated)``: the anchor check at
      training start; returns ``cfg`` with concrete anchors (resolving ``model.anchors: auto``;
      ``stated``: the ``model`` values the weights file states, see
      :class:`~detectlab.weights.formats.FileSettings`).
    """

    name: str
    config_class: type
    build: Callable[..., Any]
    make_encoder: Callable[..., Any]
    check: Callable[..., None] = lambda model_cfg, source="model": None
    model_class: type | None = None
    trainer: str = "fit"
    make_sampler: Callable[..., Any] | None = None
    with_masks: bool = False
    input_stride: int = 0
    fit_anchors: Callable[..., Any] | None = None


NOT_SETTINGS = ("family", "num_classes")  # the registry key, and what the builder resolves from the data


def model_kwargs(model_cfg) -> dict:
    """The recipe's ``model`` section as the model's keyword arguments: every field of its
    dataclass but ``family`` and ``num_classes``. The dataclass is the one declaration of a
    model's settings (:meth:`detectlab.models.base.DetectorModel.split_settings`)."""
    return {f.name: copy.deepcopy(getattr(model_cfg, f.name)) for f in dataclasses.fields(model_cfg)
            if f.name not in NOT_SETTINGS}
