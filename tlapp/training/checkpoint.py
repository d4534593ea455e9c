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
import shutil
from pathlib import Path
from typing import Any, Optional

import numpy as np

from tlapp.base.errors import TrainingError
from tlapp.base.fsutil import atomic_dir, recover_dir, sha256_file

MANIFEST = "manifest.json"  # sha256 of every file, written last
PREVIOUS = "previous"  # the checkpoint before "last": the fallback when "last" is corrupt


def save_checkpoint(
    folder: Path, model: Any, optimizer: Any, state: dict[str, Any], head: Any = None, reuse_base: bool = False
) -> None:
    """Write a checkpoint. In a frozen (embedding-cache) phase only the head
    changes: pass ``head`` and ``reuse_base=True`` after the phase's first save to
    hard-link the unchanged full-model file instead of rewriting it every epoch."""
    prev = folder / "model.weights.h5"
    with atomic_dir(folder, keep_previous=folder.with_name(PREVIOUS)) as tmp:
        if reuse_base and prev.is_file():
            os.link(prev, tmp / "model.weights.h5")
        else:
            model.save_weights(tmp / "model.weights.h5")
        if head is not None:
            head.save_weights(tmp / "head.weights.h5")
        if optimizer is not None and optimizer.built:
            np.savez(tmp / "optimizer.npz", *[np.asarray(v.numpy()) for v in optimizer.variables])
        (tmp / "state.json").write_text(json.dumps(state, indent=2, default=float))
        known = {}
        if reuse_base and (folder / MANIFEST).is_file():  # the hard-linked weights file is unchanged
            known = {k: v for k, v in json.loads((folder / MANIFEST).read_text()).items() if k == "model.weights.h5"}
        (tmp / MANIFEST).write_text(
            json.dumps({f.name: known.get(f.name) or sha256_file(f) for f in sorted(tmp.iterdir())}, indent=1)
        )


def problem(folder: Path) -> Optional[str]:
    """Why a checkpoint folder cannot be trusted (missing, truncated or altered files), or None."""
    try:
        manifest = json.loads((folder / MANIFEST).read_text())
    except FileNotFoundError:
        return None if (folder / "state.json").is_file() else "no state.json"  # written before manifests
    except (OSError, ValueError):
        return f"{MANIFEST} is unreadable"
    for name, digest in manifest.items():
        f = folder / name
        if not f.is_file():
            return f"{name} is missing"
        if sha256_file(f) != digest:
            return f"{name} does not match its recorded hash (truncated or altered)"
    return None


def choose(checkpoints: Path) -> Optional[str]:
    """Make ``checkpoints/last`` a sound checkpoint before a resume: finish an interrupted swap,
    fall back to ``previous`` when ``last`` is corrupt. Returns a warning to show, if any;
    raises :class:`TrainingError` when no sound checkpoint is left."""
    last, prev = checkpoints / "last", checkpoints / PREVIOUS
    recover_dir(last)
    why = problem(last)
    if why is None:
        return None
    if prev.is_dir() and problem(prev) is None:
        shutil.rmtree(checkpoints / "corrupt", ignore_errors=True)
        os.replace(last, checkpoints / "corrupt")
        os.replace(prev, last)
        return (
            f"checkpoint {last} is corrupt ({why}); resuming from the one before it (kept as {checkpoints / 'corrupt'})"
        )
    raise TrainingError(f"checkpoint {last} is corrupt ({why}) and there is no sound earlier one; start the run again")


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
