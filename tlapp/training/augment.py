"""Image augmentation for phases that train on pixels (random layers, training only)."""

from __future__ import annotations

from typing import Any

from tlapp.base.tfenv import quiet_import
from tlapp.config import Augment

tf, keras = quiet_import()


def augmentation_layers(a: Augment) -> list[Any]:
    layers: list[Any] = []
    if a.flip:
        layers.append(keras.layers.RandomFlip("horizontal"))
    if a.rotation:
        layers.append(keras.layers.RandomRotation(a.rotation))
    if a.zoom:
        layers.append(keras.layers.RandomZoom(a.zoom))
    if a.contrast:
        layers.append(keras.layers.RandomContrast(a.contrast, value_range=(0, 255)))
    return layers


def augmented(ds: Any, a: Augment) -> Any:
    """Apply the configured augmentation to ``(image, target)`` batches; unchanged when none is on."""
    if not a.enabled:
        return ds
    aug = keras.Sequential(augmentation_layers(a), name="augment")
    return ds.map(lambda x, y: (aug(x, training=True), y), num_parallel_calls=tf.data.AUTOTUNE)
