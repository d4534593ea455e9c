"""Layer tables and freeze plans.

The transfer-learning rules live here, once: layers are grouped into the
architecture's natural blocks, a plan decides which layers train, and
BatchNormalization layers stay frozen (inference mode) unless the plan opts
in. Keras BN running statistics drift during ``fit`` even when the backbone is
called with ``training=False`` on this backend; ``trainable=False`` stops it.
"""

from __future__ import annotations

import math
import re
from dataclasses import asdict, dataclass, replace
from typing import Any

from tlapp.backbones.catalog import BackboneEntry, block_of
from tlapp.base.errors import ConfigError
from tlapp.config import FreezePlan

STEM, TOP = "stem", "top"
# Text backbones' own pooler is never on the path: tlapp pools the sequence output itself, so
# training it would only waste optimizer state (and Keras warns about missing gradients).
UNUSED_LAYERS = ("pooled_dense", "pooler_dense")


@dataclass
class LayerInfo:
    index: int
    name: str
    type: str
    block: str
    params: int
    trainable: bool
    batchnorm: bool
    trainable_params: int = 0  # what the optimizer updates (a LoRA layer: its adapters only)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _is_bn(layer: Any) -> bool:
    return "BatchNormalization" in type(layer).__name__


def backbone_layers(backbone: Any) -> list[Any]:
    return [layer for layer in backbone.layers if type(layer).__name__ != "InputLayer"]


def assign_blocks(names: list[str], pattern: str) -> list[str]:
    """Block name per layer: matched blocks, 'stem' before the first, 'top' after the last."""
    raw = [block_of(pattern, n) for n in names]
    matched = [i for i, b in enumerate(raw) if b]
    if not matched:
        return [STEM] * len(names)
    first, last = matched[0], matched[-1]
    out, current = [], STEM
    for i, b in enumerate(raw):
        if b:
            current = b
        out.append(STEM if i < first else TOP if i > last else current)
    return out


def layer_table(backbone: Any, entry: BackboneEntry) -> list[LayerInfo]:
    layers = backbone_layers(backbone)
    blocks = assign_blocks([layer.name for layer in layers], entry.block_pattern)
    out = []
    for i, (layer, b) in enumerate(zip(layers, blocks)):
        own = [w for w in layer.weights if "lora_kernel" not in w.path]
        live = [w for w in layer.weights if w.trainable] if backbone.trainable else []
        out.append(
            LayerInfo(
                i,
                layer.name,
                type(layer).__name__,
                b,
                int(sum(math.prod(w.shape) for w in own)),
                bool(live) if layer.weights else bool(layer.trainable),
                _is_bn(layer),
                int(sum(math.prod(w.shape) for w in live)),
            )
        )
    return out


def block_order(table: list[LayerInfo]) -> list[str]:
    seen: list[str] = []
    for row in table:
        if row.block not in seen:
            seen.append(row.block)
    return seen


def plan_mask(table: list[LayerInfo], plan: FreezePlan) -> list[bool]:
    """Which layers the plan makes trainable (before the BatchNorm rule)."""
    n = len(table)
    if plan.mode in ("all", "lora"):  # lora: adapters train inside frozen layers (see enable_lora)
        return [False] * n
    if plan.mode == "none":
        return [True] * n
    if plan.mode == "top_blocks":
        middle = middle_blocks(table)
        k = plan.blocks or 0
        chosen = set(middle[len(middle) - k :]) if k else set()
        if k > len(middle):
            chosen.add(STEM)
        if k:
            chosen.add(TOP)
        return [r.block in chosen for r in table]
    if plan.mode == "up_to":
        idx = next((r.index for r in table if r.name == plan.layer), None)
        if idx is None:
            raise ConfigError(f"freeze.layer: no layer named {plan.layer!r} in this backbone (see `tlapp layers`)")
        return [r.index > idx for r in table]
    if plan.mode == "fraction":
        k = math.ceil((plan.fraction or 0.0) * n)
        return [r.index >= n - k for r in table]
    regs = [re.compile(p) for p in plan.patterns]
    return [any(rx.search(r.name) for rx in regs) for r in table]


def middle_blocks(table: list[LayerInfo]) -> list[str]:
    """The architecture's own blocks, without the stem and the top."""
    return [b for b in block_order(table) if b not in (STEM, TOP)]


def effective_mask(table: list[LayerInfo], plan: FreezePlan) -> list[bool]:
    """Which layers really train under ``plan``: its mask, minus BatchNorm (unless opted in) and unused layers.

    The one rule both :func:`apply_plan` and the GUI's live counts use.
    """
    return [
        bool(on) and r.name not in UNUSED_LAYERS and (plan.train_batchnorm or not r.batchnorm)
        for on, r in zip(plan_mask(table, plan), table)
    ]


def planned_table(table: list[LayerInfo], plan: FreezePlan) -> list[LayerInfo]:
    """``table`` as :func:`apply_plan` would leave it under ``plan`` (not LoRA), without touching the model."""
    return [replace(r, trainable=on) for r, on in zip(table, effective_mask(table, plan))]


def apply_plan(backbone: Any, entry: BackboneEntry, plan: FreezePlan) -> list[LayerInfo]:
    """Set ``trainable`` on every backbone layer; returns the updated table."""
    table = layer_table(backbone, entry)
    if plan.mode == "lora":
        enable_lora(backbone, plan.rank, plan.alpha or 2.0 * plan.rank, plan.targets)
        return layer_table(backbone, entry)
    backbone.trainable = any(plan_mask(table, plan))
    for layer, on in zip(backbone_layers(backbone), effective_mask(table, plan)):
        layer.trainable = on
    return layer_table(backbone, entry)


def lora_targets(backbone: Any) -> list[str]:
    """Names of the layers that can take an adapter (Dense/EinsumDense inside the backbone)."""
    names: list[str] = []
    for layer in backbone._flatten_layers(include_self=False):
        if _adaptable(layer) and layer.name not in names:
            names.append(layer.name)
    return names


def _adaptable(layer: Any) -> bool:
    """Dense/EinsumDense layers with weights. Not embeddings: a tied embedding is also the output layer,
    and an adapter there would change every token's score."""
    return hasattr(layer, "enable_lora") and bool(layer.weights) and "Embedding" not in type(layer).__name__


def lora_shapes(backbone: Any) -> dict[str, list[tuple[int, ...]]]:
    """Kernel shapes of every layer that can take an adapter, by layer name (read once, then counted
    for any rank and targets without touching the model: the wizard's live count)."""
    out: dict[str, list[tuple[int, ...]]] = {}
    for layer in backbone._flatten_layers(include_self=False):
        if _adaptable(layer):
            kernel = getattr(layer, "_kernel", None)
            kernel = layer.weights[0] if kernel is None else kernel
            out.setdefault(layer.name, []).append(tuple(int(d) for d in kernel.shape))
    return out


def lora_params(shapes: dict[str, list[tuple[int, ...]]], rank: int, targets: list[str]) -> int:
    """Trainable parameters of rank-``rank`` adapters on ``targets``. Keras keeps a kernel's leading
    axes: a is ``kernel.shape[:-1] + (rank,)``, b is ``(rank, kernel.shape[-1])``."""
    return sum(math.prod(k[:-1]) * rank + rank * k[-1] for t in targets for k in shapes.get(t, []))


def enable_lora(backbone: Any, rank: int, alpha: float, targets: list[str]) -> list[str]:
    """Freeze every weight, then give each layer named in ``targets`` a rank-``rank`` adapter.

    Keras computes ``kernel + (a @ b) * alpha / rank``, so the adapter starts at zero (b = 0) and
    reading ``layer.kernel`` gives the merged weight. A layer keeps its adapter once added (Keras
    cannot remove one), so calling this again only re-freezes. Returns the adapted layers' paths.
    """
    known = lora_targets(backbone)
    bad = [t for t in targets if t not in known]
    if bad:
        raise ConfigError(
            f"freeze.targets: no layer named {bad[0]!r} in this backbone (layers that take an adapter: "
            f"{', '.join(known)})"
        )
    backbone.trainable = True
    flat = [layer for layer in backbone._flatten_layers(include_self=False)]
    for layer in flat:
        layer.trainable = False
    done = []
    for layer in flat:
        if layer.name in targets and layer.weights:
            layer.trainable = True
            if not getattr(layer, "lora_enabled", False):
                layer.enable_lora(rank, lora_alpha=alpha)
            for w in layer.weights:  # only the adapter trains (a bias would drift the frozen model)
                w.trainable = "lora_kernel" in w.path
            done.append(layer.path)
    return done


def param_counts(model: Any) -> tuple[int, int]:
    """(trainable, non-trainable) parameter counts."""
    tr = int(sum(math.prod(w.shape) for w in model.trainable_weights))
    non = int(sum(math.prod(w.shape) for w in model.non_trainable_weights))
    return tr, non


def block_summary(table: list[LayerInfo]) -> list[dict[str, Any]]:
    out = []
    for b in block_order(table):
        rows = [r for r in table if r.block == b]
        out.append(
            {
                "block": b,
                "layers": len(rows),
                "params": sum(r.params for r in rows),
                "trainable_params": sum(r.trainable_params for r in rows),
            }
        )
    return out
