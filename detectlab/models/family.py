"""What a model family registers in ``MODELS``: how to configure, build and feed it."""

from __future__ import annotations

import dataclasses
import inspect
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


def model_kwargs(model_cfg, model_class) -> dict:
    """The recipe's ``model`` fields that ``model_class.__init__`` takes, by name (``family``
    and ``num_classes`` excluded: the builder resolves the class count)."""
    params = inspect.signature(model_class.__init__).parameters
    return {f.name: getattr(model_cfg, f.name) for f in dataclasses.fields(model_cfg)
            if f.name in params and f.name not in ("family", "num_classes")}
