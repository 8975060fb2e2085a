"""Optimisation: AdamW with per-variable weight-decay exclusion and learning-rate multipliers, and the
linear warm-up + cosine schedule of the official recipe."""

from __future__ import annotations

import math
import re

import keras
from keras import ops

NO_DECAY_PATTERN = r"relative_position_bias_table"


def no_decay(variable) -> bool:
    """Norms (gamma/beta), biases (every 1-D variable) and the relative-position bias tables get no
    weight decay."""
    return len(variable.shape) <= 1 or re.search(NO_DECAY_PATTERN, variable.path) is not None


@keras.saving.register_keras_serializable(package="video_swin")
class WarmupCosine(keras.optimizers.schedules.LearningRateSchedule):
    """lr(step) = base * (step + 1) / warmup for step < warmup (linear warm-up), then a cosine from base
    down to `min_lr` at `total` steps (constant afterwards). `step` counts optimiser updates."""

    def __init__(self, base_lr, total_steps, warmup_steps=0, min_lr=0.0):
        self.base_lr = float(base_lr)
        self.total_steps = int(total_steps)
        self.warmup_steps = int(warmup_steps)
        self.min_lr = float(min_lr)

    def __call__(self, step):
        step = ops.cast(step, "float32")
        warmup = float(max(self.warmup_steps, 1))
        warm = self.base_lr * (step + 1.0) / warmup
        span = float(max(self.total_steps - self.warmup_steps, 1))
        progress = ops.clip((step - self.warmup_steps) / span, 0.0, 1.0)
        cosine = self.min_lr + 0.5 * (self.base_lr - self.min_lr) * (1.0 + ops.cos(math.pi * progress))
        if self.warmup_steps <= 0:
            return cosine
        return ops.where(step < self.warmup_steps, warm, cosine)

    def get_config(self):
        return {"base_lr": self.base_lr, "total_steps": self.total_steps, "warmup_steps": self.warmup_steps,
                "min_lr": self.min_lr}


@keras.saving.register_keras_serializable(package="video_swin")
class VideoAdamW(keras.optimizers.Adam):
    """AdamW exactly as torch.optim.AdamW computes it (decoupled weight decay p <- p - lr*wd*p, then the
    Adam step with epsilon added after the bias correction), where each variable has its own
    learning-rate multiplier and decay on/off.

    lr_multipliers: list of (predicate(variable) -> bool, multiplier), first match wins (default 1);
    decay_filter: predicate(variable) -> True when the variable must NOT be decayed (default: `no_decay`).
    The multiplier scales the variable's learning rate, and with it its decay (torch param groups).
    """

    def __init__(self, learning_rate=1e-3, weight_decay=0.05, beta_1=0.9, beta_2=0.999, epsilon=1e-8,
                 lr_multipliers=None, decay_filter=no_decay, name="video_adamw", **kwargs):
        kwargs.pop("amsgrad", None)
        super().__init__(learning_rate=learning_rate, beta_1=beta_1, beta_2=beta_2, epsilon=epsilon,
                         name=name, **kwargs)
        self.decoupled_weight_decay = float(weight_decay)
        self.lr_multipliers = list(lr_multipliers or [])
        self.decay_filter = decay_filter
        self._multipliers = []
        self._decays = []

    def build(self, var_list):
        if self.built:
            return
        super().build(var_list)
        self._multipliers, self._decays = [], []
        for v in var_list:
            mult = 1.0
            for predicate, value in self.lr_multipliers:
                if predicate(v):
                    mult = float(value)
                    break
            self._multipliers.append(mult)
            self._decays.append(bool(self.decoupled_weight_decay) and not self.decay_filter(v))

    def decays(self, variable) -> bool:
        return self._decays[self._get_variable_index(variable)]

    def multiplier(self, variable) -> float:
        return self._multipliers[self._get_variable_index(variable)]

    def update_step(self, gradient, variable, learning_rate):
        """torch.optim.AdamW's step: decay, moments, then p -= lr / (1 - b1^t) * m / (sqrt(v) / sqrt(1 - b2^t)
        + eps). Keras' Adam adds epsilon before the second bias correction instead (an epsilon 1/sqrt(1 - b2^t)
        times larger: 32x at step 1), which moved variables with small gradients differently from the
        official recipe (tests/training/test_training_logic.py measured 0.8 % of a learning rate per step at
        gradients of 1e-6)."""
        index = self._get_variable_index(variable)
        dtype = variable.dtype
        lr = ops.cast(learning_rate, dtype) * self._multipliers[index]
        if self._decays[index]:
            self.assign_sub(variable, variable * ops.cast(self.decoupled_weight_decay * lr, dtype))
        gradient = ops.cast(gradient, dtype)
        step = ops.cast(self.iterations + 1, dtype)
        m = self._momentums[index]
        v = self._velocities[index]
        self.assign_add(m, ops.multiply(ops.subtract(gradient, m), 1 - self.beta_1))
        self.assign_add(v, ops.multiply(ops.subtract(ops.square(gradient), v), 1 - self.beta_2))
        bias_correction_1 = 1 - ops.power(ops.cast(self.beta_1, dtype), step)
        bias_correction_2 = 1 - ops.power(ops.cast(self.beta_2, dtype), step)
        denominator = ops.add(ops.divide(ops.sqrt(v), ops.sqrt(bias_correction_2)), ops.cast(self.epsilon, dtype))
        self.assign_sub(variable, ops.multiply(ops.divide(m, denominator), lr / bias_correction_1))

    def get_config(self):
        config = super().get_config()
        config["weight_decay"] = self.decoupled_weight_decay
        return config


def make_optimizer(model, schedule, weight_decay=0.05, backbone_lr_mult=1.0, precision="float32",
                   clipnorm=None, epsilon=1e-8):
    """VideoAdamW for a classifier: the backbone's variables get `backbone_lr_mult`; norms, biases and
    bias tables get no decay. float16 wraps it in a dynamic LossScaleOptimizer."""
    backbone_ids = {id(v) for v in model.backbone.variables}
    multipliers = [(lambda v: id(v) in backbone_ids, backbone_lr_mult)] if backbone_lr_mult != 1.0 else []
    optimizer = VideoAdamW(schedule, weight_decay=weight_decay, lr_multipliers=multipliers,
                           global_clipnorm=clipnorm, epsilon=epsilon)
    if precision == "float16":
        optimizer = keras.optimizers.LossScaleOptimizer(optimizer)
    return optimizer


def inner_optimizer(optimizer):
    return getattr(optimizer, "inner_optimizer", optimizer)
