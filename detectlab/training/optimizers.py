"""Optimizers and the learning-rate schedule from ``TrainConfig``.

:class:`FusedAdam` and :class:`FusedSGD` are Keras' ``Adam`` and ``SGD`` (same
hyper-parameters, slot variables, checkpoints and maths) whose per-variable update runs as
TensorFlow's fused kernels (``ResourceApplyAdam``, ``ResourceApplyKerasMomentum``): one
pass over each variable instead of about ten element-wise ops. For YOLOv3's 62M parameters
on 2 CPU cores the update drops from 330 ms to about 100 ms per step. Under ``tf.distribute``
both clip the summed gradient, as on one device (:class:`ClipSummedGradients`).

On one device ``FusedSGD`` with ``clipnorm`` (the R-CNN recipes) clips without touching the
gradient: each gradient's norm comes from one ``L2Loss`` pass and its clip factor scales the
learning rate instead (the momentum update is linear in ``lr * gradient``, so this is Keras'
clipping exactly), where Keras squares, sums and rescales every gradient.

:class:`WarmupDecay` is the one learning-rate schedule (``train.schedule``): per-step linear
warm-up, then constant, cosine or linear decay; during the warm-up biases (and batch-norm
betas) can start from a higher rate, which both optimizers read per variable.
:func:`choose_optimizer` implements ``train.optimizer: auto``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import keras
import tensorflow as tf

from detectlab.config import TrainConfig
from detectlab.errors import ConfigError
from detectlab.utils import log

# train.optimizer: auto (Ultralytics' rule): short runs use Adam at a class-count-scaled rate,
# long ones SGD with YOLOv5's momentum
AUTO_MAX_ADAM_STEPS = 10_000
AUTO_SGD_RATE, AUTO_SGD_MOMENTUM = 0.01, 0.937
# never weight-decayed: biases and normalisation parameters (Keras matches these in variable names)
NO_DECAY = ("bias", "beta", "gamma")
BIAS_NAMES = ("bias", "beta")  # warmed up from train.schedule.warmup_bias_lr


@keras.saving.register_keras_serializable(package="detectlab")
class WarmupDecay(keras.optimizers.schedules.LearningRateSchedule):
    """``rate`` at step ``t`` of a stage of ``total_steps``: ``rate * t / warmup_steps`` during
    the warm-up, then ``rate`` times a factor going from 1 to ``final_fraction`` at
    ``total_steps``: 1 (``constant``), ``f + (1 - f) (1 + cos(pi p)) / 2`` (``cosine``) or
    ``1 - (1 - f) p`` (``linear``), ``p`` the share of the decay done.
    :meth:`bias_rate` adds ``warmup_bias_rate * (1 - t / warmup_steps)`` during the warm-up
    (YOLOv5: biases come down from 0.1 while the weights come up from 0)."""

    def __init__(self, rate: float, total_steps: int, warmup_steps: int = 0, decay: str = "constant",
                 final_fraction: float = 0.0, warmup_bias_rate: float = 0.0):
        if decay not in ("constant", "cosine", "linear"):
            raise ValueError(f"decay: constant, cosine or linear, got {decay!r}")
        self.rate, self.total_steps, self.warmup_steps = float(rate), int(total_steps), int(warmup_steps)
        self.decay, self.final_fraction, self.warmup_bias_rate = decay, float(final_fraction), float(warmup_bias_rate)

    def __call__(self, step):
        step = tf.cast(step, tf.float32)
        warmup = float(max(self.warmup_steps, 1))
        progress = tf.clip_by_value((step - self.warmup_steps) / float(max(1, self.total_steps - self.warmup_steps)), 0.0, 1.0)
        f = self.final_fraction
        if self.decay == "cosine":
            factor = f + (1.0 - f) * 0.5 * (1.0 + tf.cos(math.pi * progress))
        elif self.decay == "linear":
            factor = 1.0 - (1.0 - f) * progress
        else:
            factor = tf.ones_like(progress)
        return tf.where(step < self.warmup_steps, self.rate * step / warmup, self.rate * factor)

    def bias_rate(self, step):
        step = tf.cast(step, tf.float32)
        extra = self.warmup_bias_rate * tf.maximum(0.0, 1.0 - step / float(max(self.warmup_steps, 1)))
        return self(step) + extra

    def get_config(self) -> dict:
        return {"rate": self.rate, "total_steps": self.total_steps, "warmup_steps": self.warmup_steps, "decay": self.decay,
                "final_fraction": self.final_fraction, "warmup_bias_rate": self.warmup_bias_rate}


def _variable_rate(optimizer, variable, learning_rate):
    """The rate for ``variable``: the bias warm-up rate for biases while it lasts."""
    schedule = optimizer._learning_rate
    if not (isinstance(schedule, WarmupDecay) and schedule.warmup_bias_rate and schedule.warmup_steps):
        return learning_rate
    name = getattr(variable, "name", "").split("/")[-1].split(":")[0]
    if name not in BIAS_NAMES:
        return learning_rate
    return tf.cast(schedule.bias_rate(optimizer.iterations), learning_rate.dtype)


def _handle(variable):
    """The resource handle of a Keras or TensorFlow variable."""
    if isinstance(variable, keras.Variable):
        variable = variable.value
    return variable.handle


def _dense(gradient, variable) -> bool:
    return not isinstance(gradient, tf.IndexedSlices) and variable.dtype == tf.float32


def _replicas_in_sync() -> int:
    context = tf.distribute.get_replica_context()
    return 1 if context is None else context.num_replicas_in_sync


class ClipSummedGradients:
    """Clip (``clipnorm``, ``global_clipnorm``, ``clipvalue``) the gradient summed over the
    replicas, as on one device. Keras 3 clips each replica's share before summing them, so with
    N replicas a clip let through up to N times more (Mask R-CNN instant, clipnorm 5 on 2
    replicas: the second step's losses 5-10% off the single device's). Overrides two private
    steps of Keras' TensorFlow optimizer (checked by tests/training/test_distribute.py)."""

    def _clip_gradients(self, grads):
        if _replicas_in_sync() > 1:
            return grads  # clipped once summed, in _all_reduce_sum_gradients
        return super()._clip_gradients(grads)

    def _all_reduce_sum_gradients(self, grads_and_vars):
        summed = super()._all_reduce_sum_gradients(grads_and_vars)
        if _replicas_in_sync() == 1:
            return summed
        grads = keras.optimizers.Optimizer._clip_gradients(self, [g for g, _ in summed])
        return [(g, v) for g, (_, v) in zip(grads, summed)]


@keras.saving.register_keras_serializable(package="detectlab")
class FusedAdam(ClipSummedGradients, keras.optimizers.Adam):
    def update_step(self, gradient, variable, learning_rate):
        learning_rate = _variable_rate(self, variable, learning_rate)
        if self.amsgrad or not _dense(gradient, variable):
            return super().update_step(gradient, variable, learning_rate)
        dtype = variable.dtype
        step = tf.cast(self.iterations + 1, dtype)
        index = self._get_variable_index(variable)
        tf.raw_ops.ResourceApplyAdam(
            var=_handle(variable),
            m=_handle(self._momentums[index]),
            v=_handle(self._velocities[index]),
            beta1_power=tf.pow(tf.cast(self.beta_1, dtype), step),
            beta2_power=tf.pow(tf.cast(self.beta_2, dtype), step),
            lr=tf.cast(learning_rate, dtype),
            beta1=tf.cast(self.beta_1, dtype),
            beta2=tf.cast(self.beta_2, dtype),
            epsilon=tf.cast(self.epsilon, dtype),
            grad=tf.cast(gradient, dtype),
            use_locking=False,
        )


@keras.saving.register_keras_serializable(package="detectlab")
class FusedSGD(ClipSummedGradients, keras.optimizers.SGD):
    def _clip_gradients(self, grads):
        if self._clips_by_rate():
            return grads  # update_step scales the rate instead
        return super()._clip_gradients(grads)

    def _clips_by_rate(self) -> bool:
        return bool(self.clipnorm) and tf.distribute.get_strategy().num_replicas_in_sync == 1

    def update_step(self, gradient, variable, learning_rate):
        learning_rate = _variable_rate(self, variable, learning_rate)
        clip_here = self._clips_by_rate()
        if self.momentum == 0 or not _dense(gradient, variable):
            if clip_here:
                gradient = self._clip_by_norm(gradient)
            return super().update_step(gradient, variable, learning_rate)
        dtype = variable.dtype
        rate = tf.cast(learning_rate, dtype)
        if clip_here:  # Keras: gradient * clipnorm / max(norm, clipnorm)
            norm = tf.sqrt(2.0 * tf.nn.l2_loss(tf.cast(gradient, dtype)))
            rate = rate * (self.clipnorm / tf.maximum(norm, self.clipnorm))
        tf.raw_ops.ResourceApplyKerasMomentum(
            var=_handle(variable),
            accum=_handle(self.momentums[self._get_variable_index(variable)]),
            lr=rate,
            grad=tf.cast(gradient, dtype),
            momentum=tf.cast(self.momentum, dtype),
            use_locking=False,
            use_nesterov=self.nesterov,
        )


@dataclass(frozen=True)
class OptimizerChoice:
    """What ``train.optimizer`` resolves to for a run: ``adam`` or ``sgd``, the factor on every
    stage's rate (``auto``: its rate / ``train.lr``) and SGD's momentum."""

    name: str
    rate_scale: float = 1.0
    momentum: float = 0.9
    bias_warmup: bool = True  # False: biases warm up like the weights (auto's Adam, as Ultralytics)


def choose_optimizer(train: TrainConfig, num_classes: int, steps: int) -> OptimizerChoice:
    """``train.optimizer``; ``auto`` picks by the run's length in ``steps`` (all stages), as
    Ultralytics does: at most 10,000 steps, Adam at ``0.002 * 5 / (4 + classes)`` (without
    the higher bias warm-up rate); more, SGD at 0.01 with momentum 0.937. The choice is logged."""
    if train.optimizer != "auto":
        return OptimizerChoice(train.optimizer, 1.0, train.momentum)
    if steps > AUTO_MAX_ADAM_STEPS:
        choice = OptimizerChoice("sgd", AUTO_SGD_RATE / train.lr, AUTO_SGD_MOMENTUM)
        rate = AUTO_SGD_RATE
    else:
        rate = round(0.002 * 5 / (4 + num_classes), 6)
        choice = OptimizerChoice("adam", rate / train.lr, train.momentum, bias_warmup=False)
    log.info("optimizer auto: %s at lr %g for a run of %d steps and %d classes (stage rates scaled by %g)%s%s",
             "SGD (momentum 0.937)" if choice.name == "sgd" else "Adam", rate, steps, num_classes, choice.rate_scale,
             f", weight decay {train.weight_decay:g}" if train.weight_decay else "",
             "; biases warm up like the weights (no higher bias rate with Adam)"
             if not choice.bias_warmup and train.schedule.warmup_bias_lr else "")
    return choice


def warmup_steps(train: TrainConfig, steps_per_epoch: int) -> int:
    """The warm-up length: ``max(warmup_epochs x steps per epoch, warmup_steps)``."""
    s = train.schedule
    return max(int(round(s.warmup_epochs * steps_per_epoch)), int(s.warmup_steps))


def describe_schedule(train: TrainConfig, lr: float, total_steps: int, steps_per_epoch: int = 1,
                      choice: OptimizerChoice | None = None) -> str:
    """One line: what the learning rate of a stage of ``total_steps`` steps at ``lr`` does
    (the rate :func:`make_optimizer` builds, with ``choice``'s scale)."""
    choice = choice or OptimizerChoice(train.optimizer if train.optimizer != "auto" else "adam", 1.0, train.momentum)
    s, rate = train.schedule, lr * choice.rate_scale
    warmup = warmup_steps(train, steps_per_epoch)
    bias = s.warmup_bias_lr if choice.bias_warmup and warmup else 0.0
    text = (f"linear warm-up from 0 over {warmup} steps" + (f" (biases from {bias:g})" if bias else "") + ", then ") if warmup else ""
    if s.decay == "constant":
        plateau = " (ReduceLROnPlateau may lower it)" if train.reduce_lr_on_plateau is not None else ""
        return f"{text}constant {rate:g}{plateau}"
    return f"{text}{s.decay} decay from {rate:g} to {rate * s.final_lr_fraction:g} over {max(1, total_steps - warmup)} steps"


def make_optimizer(train: TrainConfig, lr: float, total_steps: int, steps_per_epoch: int = 1,
                   choice: OptimizerChoice | None = None) -> keras.optimizers.Optimizer:
    """The stage's optimizer (``choice``, default ``train.optimizer`` as given) at ``lr`` over
    ``total_steps`` steps: ``train.schedule``, ``clipnorm``, decoupled ``weight_decay``
    (not on biases and normalisation parameters)."""
    choice = choice or OptimizerChoice(train.optimizer if train.optimizer != "auto" else "adam", 1.0, train.momentum)
    s = train.schedule
    warmup = warmup_steps(train, steps_per_epoch)
    scheduled = s.decay != "constant" or warmup > 0
    if scheduled and train.reduce_lr_on_plateau is not None:
        raise ConfigError("train.reduce_lr_on_plateau needs train.schedule.decay=constant and no warm-up")
    rate = lr * choice.rate_scale
    if scheduled:
        rate = WarmupDecay(rate, total_steps, warmup, s.decay, s.final_lr_fraction,
                           s.warmup_bias_lr if choice.bias_warmup else 0.0)
    kwargs = {"learning_rate": rate}
    if train.clipnorm:
        kwargs["clipnorm"] = train.clipnorm
    if train.weight_decay:
        kwargs["weight_decay"] = train.weight_decay
    optimizer = FusedAdam(**kwargs) if choice.name == "adam" else FusedSGD(momentum=choice.momentum, **kwargs)
    if train.weight_decay:
        optimizer.exclude_from_weight_decay(var_names=list(NO_DECAY))
    if keras.mixed_precision.dtype_policy().name == "mixed_float16":  # what Keras' compile would do, replica-safe
        return ReplicaLossScaleOptimizer(optimizer)
    return optimizer


# Initial loss scale of Faster R-CNN's alternating views under mixed_float16 (Keras: 2**15).
# Measured on the instant VGG16 recipe: from 2**15 the classifier's first steps overflow in
# float16 and are skipped while the RPN step keeps moving the shared backbone, which leaves
# the classifier behind (its loss rose 3.3 -> 5.5 in two epochs where float32 fell to 1.0);
# from 2**10 no step was skipped and the losses tracked float32's. Keras doubles the scale
# after every 2000 finite steps, so small gradients still get the range they need.
ALTERNATING_INITIAL_LOSS_SCALE = 2.0**10


@keras.saving.register_keras_serializable(package="detectlab")
class ReplicaLossScaleOptimizer(keras.optimizers.LossScaleOptimizer):
    """Keras' ``LossScaleOptimizer`` that skips a step when the gradients of *any* replica
    overflow. Keras checks each replica's own gradients (they are summed only later, inside
    the inner optimizer): under ``MirroredStrategy`` one replica's inf then reached the
    all-reduced update of the others and the weights became NaN (instant YOLOv3-tiny,
    mixed_float16 on two CPU replicas: loss NaN at batch 4)."""

    def check_finite(self, grads):
        finite = super().check_finite(grads)
        context = tf.distribute.get_replica_context()
        if context is None or context.num_replicas_in_sync == 1:
            return finite
        overflowed = context.all_reduce(tf.distribute.ReduceOp.SUM, tf.cast(tf.logical_not(finite), tf.float32))
        return tf.equal(overflowed, 0.0)


def loss_scaled(optimizer, model, initial_scale: float = 2.0**15):
    """``optimizer`` in a :class:`ReplicaLossScaleOptimizer` starting at ``initial_scale`` when
    ``model`` computes in float16 (an unbuilt one passed in gets that start), else unchanged."""
    if isinstance(optimizer, keras.optimizers.LossScaleOptimizer):
        if not optimizer.built:
            optimizer.initial_scale = initial_scale
        return optimizer
    if model.dtype_policy.name != "mixed_float16":
        return optimizer
    return ReplicaLossScaleOptimizer(optimizer, initial_scale=initial_scale)
