"""Optimizers, LR schedules and discriminative (per-block) learning rates.

Keras has no per-variable learning rate. ``update_step(gradient, variable,
learning_rate)`` is called once per variable on every backend, so a subclass
that scales ``learning_rate`` by a per-variable multiplier gives fastai-style
discriminative LRs with any Keras optimizer (Adam's update is invariant to
gradient scale, so scaling gradients instead would do nothing).
"""

from __future__ import annotations

import math
from typing import Any, Optional

from tlapp.base.tfenv import quiet_import
from tlapp.config import Phase

tf, keras = quiet_import()

_CLASSES = {
    "adam": keras.optimizers.Adam,
    "adamw": keras.optimizers.AdamW,
    "sgd": keras.optimizers.SGD,
    "rmsprop": keras.optimizers.RMSprop,
}


def lr_schedule(phase: Phase, steps_per_epoch: int) -> Any:
    """Constant, cosine (to 0 over the phase) or step decay, driven by optimizer.iterations."""
    total = max(1, phase.epochs * steps_per_epoch)
    if phase.schedule == "cosine":
        return keras.optimizers.schedules.CosineDecay(phase.learning_rate, decay_steps=total, alpha=0.01)
    if phase.schedule == "step":
        return keras.optimizers.schedules.ExponentialDecay(
            phase.learning_rate,
            decay_steps=phase.step_every * steps_per_epoch,
            decay_rate=phase.step_factor,
            staircase=True,
        )
    return phase.learning_rate


def _discriminative(base: type) -> type:
    class Discriminative(base):  # type: ignore[misc, valid-type]
        def set_multipliers(self, multipliers: dict[str, float]) -> None:
            self._lr_mult = dict(multipliers)

        def build(self, variables):
            super().build(variables)
            mults = getattr(self, "_lr_mult", {})
            self._mult_by_index = [mults.get(v.path, 1.0) for v in variables]

        def update_step(self, gradient, variable, learning_rate):
            mult = self._mult_by_index[self._get_variable_index(variable)]
            if mult != 1.0:
                learning_rate = keras.ops.multiply(keras.ops.cast(learning_rate, variable.dtype), mult)
            return super().update_step(gradient, variable, learning_rate)

    Discriminative.__name__ = f"Discriminative{base.__name__}"
    return Discriminative


def make_optimizer(phase: Phase, steps_per_epoch: int, multipliers: Optional[dict[str, float]] = None) -> Any:
    cls = _CLASSES[phase.optimizer]
    kwargs: dict[str, Any] = {"learning_rate": lr_schedule(phase, steps_per_epoch)}
    if phase.weight_decay:  # every optimizer tlapp offers takes it
        kwargs["weight_decay"] = phase.weight_decay
    if phase.optimizer == "sgd":
        kwargs["momentum"] = 0.9
    if multipliers:
        opt = _discriminative(cls)(**kwargs)
        opt.set_multipliers(multipliers)
        return opt
    return cls(**kwargs)


def block_multipliers(model_vars_by_block: dict[str, list[Any]], order: list[str], factor: float) -> dict[str, float]:
    """LR multiplier per variable path: 1.0 for the top block, ``factor**k`` k blocks further down."""
    out: dict[str, float] = {}
    trainable_blocks = [b for b in order if model_vars_by_block.get(b)]
    for k, block in enumerate(reversed(trainable_blocks)):
        for v in model_vars_by_block[block]:
            out[v.path] = float(math.pow(factor, k))
    return out
