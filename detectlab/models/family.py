"""What a model family registers in ``MODELS``: how to configure, build and feed it."""

from __future__ import annotations

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
    - ``trainer``: ``"fit"`` (generator-driven ``fit``) or ``"alternating"`` (then
      ``make_sampler(cfg, num_classes)`` gives the loop's ROI sampler);
    - ``with_masks``: whether training samples carry instance masks.
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
