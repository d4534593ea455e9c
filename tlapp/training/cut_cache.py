"""A fine-tune of the top of an image backbone, trained on cached activations below it.

A ``top_blocks`` fine-tune leaves the bottom of the backbone frozen (and its
BatchNorm in inference mode), so every epoch would recompute the same
activations at the first trainable layer. Computing them once (and once for
the mirrored images, when the phase flips) and training only the layers above
is exact, not an approximation: the same layer objects, the same weights,
inference-mode BatchNorm, and each epoch shows each example once, mirrored or
not at random, as ``Augment(flip=True)`` does. On 300 sign-language photos a
6-epoch Lite0 fine-tune of the top two blocks took about 15 s this way.

It applies only where it is exact: flips are the only augmentation, nothing
below the cut trains, the activations fit :data:`BUDGET_BYTES`, one device
trains, and the backbone can be cut at one tensor (a Keras functional model
whose first trainable layer takes a single input). Otherwise the phase runs
through the whole model as before, and the ``phase_start`` event says which.

The head's embedding pass goes through the same bottom on its way to the pooled
vectors. When a fine-tune with a cut may follow, that pass keeps the activations
(:func:`keeping`, :class:`Kept`): the vectors come from ``lower`` then ``embed``
(the same layers), and the fine-tune starts without a second pass below the cut
(on 300 sign photos, 2 cores, that pass and its mirror took 20 s of a 160 s run).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Optional

import numpy as np

from tlapp.base.tfenv import quiet_import

_, keras = quiet_import()

BUDGET_BYTES = 1 << 30  # activations (and their mirrors) held in memory: 1 GiB at most


@dataclass
class Cut:
    """The backbone split at ``layer``: images -> activations, and activations -> the model's outputs."""

    layer: str
    lower: Any  # raw image batch -> activations at ``layer``'s input (the model's own resize and scaling)
    target: Any  # activations -> outputs, through the very layers of the full model
    shape: tuple[int, ...]  # one example's activations
    embed: Any  # activations -> the pooled vectors the head reads (the embedding pass's output)


def find_cut(asm: Any, table: list[Any]) -> tuple[Optional[Cut], str]:
    """Where ``asm``'s backbone can be cut below its first trainable layer, or (None, why not)."""
    backbone = asm.backbone.model
    first = next((r for r in table if r.trainable), None)
    if first is None or first.index == 0:
        return None, "its first layer trains, so nothing below it is frozen"
    try:
        cut_in = backbone.get_layer(first.name).input
        if isinstance(cut_in, (list, tuple)):
            return None, f"layer {first.name} takes several inputs"
        upper = keras.Model(cut_in, backbone.output)
        image = keras.Input((None, None, 3), name="image")
        x = image
        for layer in asm.features.layers[1:]:
            if layer is backbone:
                break
            x = layer(x)
        lower = keras.Model(image, keras.Model(backbone.input, cut_in)(x, training=False))
    except (ValueError, AttributeError, TypeError) as e:  # not a functional graph cut at one tensor
        return None, f"the backbone cannot be cut at {first.name} ({type(e).__name__})"
    size = asm.backbone.size
    shape = tuple(int(d) for d in lower.compute_output_shape((1, size, size, 3))[1:])
    act = keras.Input(shape, name="activations")
    pooled = asm.features.get_layer("pool")(upper(act, training=False))
    target = keras.Model(act, asm.head(pooled), name="top_of_backbone")
    return Cut(first.name, lower, target, shape, keras.Model(act, pooled, name="embed_from_activations")), ""


def fits(cut: Cut, n: int, flip: bool) -> bool:
    return n * int(np.prod(cut.shape)) * 4 * (2 if flip else 1) <= BUDGET_BYTES


@dataclass
class Kept:
    """Activations at ``layer`` of the examples whose keys are ``keys``, in that order (one embedding pass)."""

    layer: str
    keys: list[str]
    values: np.ndarray

    def take(self, layer: str, keys: list[str]) -> Optional[np.ndarray]:
        """The rows of ``keys`` (a view when they are one run of rows, as train and validation are), or None
        when this pass did not cover them all or was cut elsewhere."""
        if layer != self.layer:
            return None
        where = {k: i for i, k in enumerate(self.keys)}
        if not all(k in where for k in keys):
            return None
        idx = np.array([where[k] for k in keys], dtype=np.int64)
        if len(idx) and np.array_equal(idx, np.arange(idx[0], idx[0] + len(idx))):
            return self.values[idx[0] : idx[0] + len(idx)]
        return self.values[idx]


def keeping(
    lower: Callable[[Any], Any], embed: Callable[[Any], Any], n: int
) -> tuple[Callable[[Any], Any], Callable[[], np.ndarray]]:
    """A forward pass to the pooled vectors through ``lower`` then ``embed`` that keeps the activations of
    ``n`` examples between them, in batch order, written into one matrix (a padded last batch is cut off);
    the second function returns that matrix."""
    kept: list[np.ndarray] = []
    row = 0

    def forward(x: Any) -> Any:
        nonlocal row
        act = np.asarray(lower(x), dtype=np.float32)
        if not kept:
            kept.append(np.empty((n, *act.shape[1:]), np.float32))
        k = min(len(act), n - row)
        kept[0][row : row + k] = act[:k]
        row += k
        return embed(act)

    return forward, lambda: kept[0][:row] if kept else np.zeros((0,), np.float32)
