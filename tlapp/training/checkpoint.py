"""Per-epoch checkpoints with optimizer state, written atomically.

A checkpoint is a folder ``checkpoints/last`` with the full model's weights,
the optimizer's variables (including ``iterations``, so the LR schedule
continues where it stopped) and a small ``state.json`` (phase, epoch, best
metric). The folder is built beside the old one and swapped in with
``os.replace``: a crash mid-save leaves the previous checkpoint intact.
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Optional

import numpy as np

from tlapp.base.fsutil import atomic_dir


def save_checkpoint(folder: Path, model: Any, optimizer: Any, state: dict[str, Any], head: Any = None,
                    reuse_base: bool = False) -> None:
    """Write a checkpoint. In a frozen (embedding-cache) phase only the head
    changes: pass ``head`` and ``reuse_base=True`` after the phase's first save to
    hard-link the unchanged full-model file instead of rewriting it every epoch."""
    prev = folder / "model.weights.h5"
    with atomic_dir(folder) as tmp:
        if reuse_base and prev.is_file():
            os.link(prev, tmp / "model.weights.h5")
        else:
            model.save_weights(tmp / "model.weights.h5")
        if head is not None:
            head.save_weights(tmp / "head.weights.h5")
        if optimizer is not None and optimizer.built:
            np.savez(tmp / "optimizer.npz", *[np.asarray(v.numpy()) for v in optimizer.variables])
        (tmp / "state.json").write_text(json.dumps(state, indent=2, default=float))


def read_state(folder: Path) -> Optional[dict[str, Any]]:
    p = folder / "state.json"
    return json.loads(p.read_text()) if p.is_file() else None


def restore_weights(folder: Path, model: Any, head: Any = None) -> None:
    model.load_weights(folder / "model.weights.h5")
    if head is not None and (folder / "head.weights.h5").is_file():
        head.load_weights(folder / "head.weights.h5")


def restore_optimizer(folder: Path, optimizer: Any, variables: list[Any]) -> bool:
    """Build the optimizer for ``variables`` and load its saved state, if any."""
    p = folder / "optimizer.npz"
    if not p.is_file():
        return False
    optimizer.build(variables)
    data = np.load(p)
    arrays = [data[f"arr_{i}"] for i in range(len(data.files))]
    if len(arrays) != len(optimizer.variables):
        return False
    for var, arr in zip(optimizer.variables, arrays):
        var.assign(arr)
    return True
