"""What every detectlab model shares: named losses, config round trip, layer presets.

Models are *functional subclasses* of ``keras.Model``: the graph is built in ``__init__``
from plain constructor arguments (so ``get_config``/``from_config`` round-trip and
``keras.saving.load_model(..., safe_mode=True)`` rebuilds them), its layers are named
(for by-name weight loading and layer presets; :func:`detectlab.utils.named_layers`
opens the convolution + batch-norm pairs), and ``compute_loss`` returns the
weighted sum of the named loss terms its criterion (``CRITERION``, built from the recipe's
``loss`` section) returns, each tracked by a ``keras.metrics.Mean`` of the same name, so
every term reaches the progress bar, History, CSV and TensorBoard.
"""

from __future__ import annotations

import dataclasses
import re

import keras
import tensorflow as tf

from detectlab.errors import ConfigError
from detectlab.models.family import NOT_SETTINGS, model_kwargs
from detectlab.utils import named_layers

L2_LOSS = "l2_loss"


def replica_scale(value):
    """Divide a per-replica loss by the number of replicas, as Keras' own losses do."""
    replicas = tf.distribute.get_strategy().num_replicas_in_sync
    return value if replicas == 1 else value * (1.0 / replicas)


def _reducible(logs: dict, strategy) -> dict:
    """Logs shaped for Keras' cross-replica reduction.

    Under ``MultiWorkerMirroredStrategy`` Keras 3 reduces every logged value with
    ``MEAN`` over axis 0, which fails for scalars (tensorflow/tensorflow#72388): give them
    shape ``(1,)`` there, so the reduction averages the replicas and returns a scalar.
    """
    if not isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy):
        return logs
    return {name: tf.reshape(value, [1]) for name, value in logs.items()}


def threshold_inputs(images, enabled: bool):
    """An inference model's inputs and its ``thresholds`` input ``(B, 2)`` ``[score, nms]``
    (``None`` when the thresholds are fixed at build time)."""
    if not enabled:
        return images, None
    thresholds = keras.Input((2,), name="thresholds")
    return [images, thresholds], thresholds


class DetectorModel(keras.Model):
    """Base class. Subclasses set ``CONFIG``, ``CRITERION`` and ``LAYER_PRESETS`` and build
    the graph from the settings :meth:`split_settings` gives them."""

    # the family's ``model`` dataclass: the one declaration of the model's settings, their
    # defaults and their types (the recipe, the constructor and the saved config all use it)
    CONFIG: type | None = None
    # the family's :class:`~detectlab.losses.criterion.Criterion` (its terms and their names)
    CRITERION: type | None = None
    # preset name -> regex of the layers that train (matched against full layer names)
    LAYER_PRESETS: dict[str, str] = {"all": ".*"}

    @classmethod
    def split_settings(cls, kwargs: dict):
        """``(settings, keras kwargs)``: the constructor's keyword arguments that are fields of
        ``CONFIG`` (over its defaults), and the rest for ``keras.Model`` (``name``, ...)."""
        fields = {f.name for f in dataclasses.fields(cls.CONFIG)} - set(NOT_SETTINGS)
        given = {k: kwargs.pop(k) for k in list(kwargs) if k in fields}
        return cls.CONFIG(**given), kwargs

    def _init_settings(self, settings, num_classes: int, **extra) -> None:
        """What ``get_config`` saves: the class count, every setting and ``extra``."""
        self.constructor_args = {"num_classes": int(num_classes), **model_kwargs(settings), **extra}

    def _init_classes(self, num_classes: int, class_names=None, category_ids=None) -> None:
        """Class metadata saved with the model: names and the dataset's category ids."""
        self.num_classes = int(num_classes)
        self.class_names = [str(n) for n in class_names] if class_names else [f"class_{k}" for k in range(num_classes)]
        self.category_ids = [int(i) for i in category_ids] if category_ids else list(range(1, num_classes + 1))
        if len(self.class_names) != self.num_classes or len(self.category_ids) != self.num_classes:
            raise ConfigError(f"{len(self.class_names)} class names / {len(self.category_ids)} category ids for {num_classes} classes")
        self.constructor_args.update({"class_names": self.class_names, "category_ids": self.category_ids})

    @classmethod
    def loss_settings(cls, loss_cfg) -> dict:
        """The constructor's loss arguments from a recipe's ``loss`` section: ``loss_terms``
        (resolved: ``loss.terms`` with ``loss.box``), ``loss_weights`` and
        ``label_smoothing``; raises ``ConfigError`` for a bad name (checked before data loads)."""
        terms = cls.CRITERION.resolve_terms(loss_cfg.terms, loss_cfg.box)
        cls.resolve_loss_weights(loss_cfg.weights, terms)
        return {"loss_terms": list(terms), "loss_weights": dict(loss_cfg.weights), "label_smoothing": loss_cfg.label_smoothing}

    @classmethod
    def resolve_loss_weights(cls, loss_weights: dict | None, terms=None) -> dict[str, float]:
        """``{registered loss name: weight}`` for every one of ``terms`` (default: the family's
        reference terms; 1.0 when not given). A name that is not a registered loss, or not one
        of the terms, is a ``ConfigError`` naming it."""
        from detectlab.registry import LOSSES, RegistryError

        terms = tuple(terms or cls.CRITERION.DEFAULT_TERMS)
        weights = dict(loss_weights or {})
        for name, value in weights.items():
            try:
                LOSSES.get(name)
            except RegistryError as exc:
                raise ConfigError(f"loss.weights: {exc}") from None
            if name not in terms:
                raise ConfigError(f"loss.weights.{name}: not a loss of {cls.__name__} "
                                  f"(its losses: {', '.join(terms)})")
            if not isinstance(value, (int, float)) or value < 0:
                raise ConfigError(f"loss.weights.{name}: expected a number >= 0, got {value!r}")
        return {name: float(weights.get(name, 1.0)) for name in terms}

    def _init_losses(self, criterion, loss_weights: dict | None, track_l2: bool = True) -> None:
        """Adopt ``criterion`` (saved as ``loss_terms`` / ``label_smoothing``): weights and one
        tracker per term (+ ``l2_loss``)."""
        self.criterion = criterion
        self.loss_weights = self.resolve_loss_weights(loss_weights, criterion.names)
        self.constructor_args.update({"loss_weights": dict(loss_weights or {}), "loss_terms": list(criterion.names),
                                      "label_smoothing": criterion.label_smoothing})
        self.loss_trackers = {
            name: keras.metrics.Mean(name=name) for name in (*criterion.names, *((L2_LOSS,) if track_l2 else ()))
        }

    @property
    def loss_names(self) -> tuple[str, ...]:
        """The named loss terms this model logs (its criterion's)."""
        return self.criterion.names

    def total_loss(self, terms: dict, l2=None) -> tf.Tensor:
        """Weight, track and sum named loss terms (+ ``l2``, by default the layers' L2
        regularisation), each under its own name."""
        total = 0.0
        for name in self.loss_names:
            value = self.loss_weights[name] * tf.cast(terms[name], tf.float32)
            self.loss_trackers[name].update_state(value)
            total = total + value
        if l2 is None:
            l2 = tf.add_n([tf.cast(v, tf.float32) for v in self.losses]) if self.losses else tf.zeros(())
        self.loss_trackers[L2_LOSS].update_state(l2)
        return replica_scale(total + l2)

    def train_step(self, data):
        return _reducible(super().train_step(data), self.distribute_strategy)

    def test_step(self, data):
        return _reducible(super().test_step(data), self.distribute_strategy)

    def _maybe_symbolic_build(self, iterator=None, data_batch=None):
        """Build what ``fit`` needs before its first step: only the optimizer.

        detectlab models are built when constructed and compile no Keras losses or
        metrics. Keras' default fetches a batch and all-reduces it across replicas first,
        which fails for uint8 images under ``MultiWorkerMirroredStrategy``. Keras 3.15 has no
        public hook for this step, so this overrides the private one (checked by
        tests/training/test_distribute.py).
        """
        if self.optimizer is not None and not self.optimizer.built:
            with self.distribute_strategy.scope():
                self.optimizer.build(self.trainable_variables)

    # -- layer presets -------------------------------------------------------------------

    def set_trainable_layers(self, preset_or_regex: str) -> list[str]:
        """Make the layers matching a preset (or a regex) trainable and freeze the rest.

        Returns the names of the layers that have weights and train. Frozen batch
        normalisation layers run in inference mode.
        """
        pattern = self.LAYER_PRESETS.get(preset_or_regex, preset_or_regex)
        try:
            regex = re.compile(pattern)
        except re.error as exc:
            presets = ", ".join(self.LAYER_PRESETS)
            raise ConfigError(f"layers: '{preset_or_regex}' is neither a preset ({presets}) nor a valid regex: {exc}") from None
        trained = []
        for layer in named_layers(self):
            if not layer.weights:
                continue
            layer.trainable = bool(regex.fullmatch(layer.name))
            if layer.trainable:
                trained.append(layer.name)
        if not trained:
            presets = ", ".join(self.LAYER_PRESETS)
            raise ConfigError(f"layers: '{preset_or_regex}' matches no layer with weights (presets: {presets})")
        return trained

    def get_layer(self, name=None, index=None):
        """Also finds the layers grouped in a :class:`ConvBatchNorm` by their own names."""
        if name is not None and index is None:
            for layer in named_layers(self):
                if layer.name == name:
                    return layer
        return super().get_layer(name, index)

    # -- serialisation -------------------------------------------------------------------

    def get_config(self) -> dict:
        return {**self.constructor_args, "name": self.name}

    @classmethod
    def from_config(cls, config: dict):
        return cls(**config)
