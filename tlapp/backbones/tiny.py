"""A tiny CNN backbone (three conv blocks with BatchNorm) for tests and smoke runs.

Registered in the catalog like any other backbone (``tiny_cnn``), so tests
exercise the real code paths at a fraction of the cost.
"""

from __future__ import annotations

from typing import Any

from tlapp.base.tfenv import quiet_import


def build(size: int, weights: str, options: dict[str, Any]) -> Any:

    _, keras = quiet_import()
    width = int(options.get("width", 8))
    inp = keras.Input((size, size, 3), name="tiny_input")
    x = keras.layers.Conv2D(width, 3, padding="same", use_bias=False, name="stem_conv")(inp)
    x = keras.layers.BatchNormalization(name="stem_bn")(x)
    x = keras.layers.ReLU(name="stem_relu")(x)
    for b in range(1, 4):
        x = keras.layers.Conv2D(width * b, 3, strides=2, padding="same", use_bias=False, name=f"block{b}_conv")(x)
        x = keras.layers.BatchNormalization(name=f"block{b}_bn")(x)
        x = keras.layers.ReLU(name=f"block{b}_relu")(x)
    return keras.Model(inp, x, name="tiny_cnn")
