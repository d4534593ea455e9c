"""Embedding cache for frozen phases.

When the whole backbone is frozen and nothing augments the images, every
epoch would push the same pixels through the same network. We run the
feature extractor once, keep the pooled vectors (in memory for this process,
or on disk keyed by data + backbone + weights), and train only the head on
them. The physical limit of a frozen phase is one forward pass; this gets
close to it.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any, Callable, Optional

import numpy as np

from tlapp.base.errors import Cancelled
from tlapp.base.fsutil import atomic_path
from tlapp.data.examples import Example
from tlapp.data.labels import LabelEncoder

_MEMORY: dict[str, np.ndarray] = {}
# Embedding matrices larger than this are written to a memory-mapped file (50,000 x 1280 float32 is 256 MB).
MEMMAP_BYTES = 128 * 2**20


def cache_key(examples: list[Example], backbone_id: dict[str, Any]) -> str:
    h = hashlib.sha256(json.dumps(backbone_id, sort_keys=True, default=str).encode())
    for e in examples:
        if e.text is not None:
            h.update(f"{e.text}|{e.label}\n".encode())
            continue
        try:
            st = os.stat(e.path)
            h.update(f"{e.path}|{st.st_size}|{st.st_mtime_ns}\n".encode())
        except OSError:
            h.update(f"{e.path}|missing\n".encode())
    return h.hexdigest()[:32]


def compute(
    forward: Callable[[Any], Any],
    dataset: Any,
    n_batches: int,
    n_rows: int,
    on_batch: Optional[Callable[[int, int], None]] = None,
    should_stop: Optional[Callable[[], bool]] = None,
    into: Optional[Path] = None,
) -> np.ndarray:
    """One forward pass of the feature extractor (``forward``: a batch to its vectors) over
    ``dataset`` (images only), ``n_rows`` examples.

    Iterates exactly ``n_batches``: asking the parallel-decode pipeline for the end of its
    data stalled 16-19 s after the last batch of 1,000 images (measured here; gone with ``take``).
    The result is written in place into one preallocated float32 matrix, so peak memory is the
    matrix itself, not the matrix plus a list of its pieces. With ``into`` (large sets) the matrix
    is a memory-mapped ``.npy`` file: its pages are file-backed, so the kernel can page them out
    instead of the process growing with the data set.
    """
    out: Optional[np.ndarray] = None
    row, full = 0, 0
    for i, batch in enumerate(dataset.take(n_batches) if hasattr(dataset, "take") else dataset):
        x = batch[0] if isinstance(batch, tuple) else batch
        k = int(x.shape[0])
        full = full or k
        if k < full:  # a short last batch is padded: a new input shape would trace the model again (~1 s)
            x = np.concatenate([np.asarray(x), np.zeros((full - k, *x.shape[1:]), np.asarray(x).dtype)])
        y = np.asarray(forward(x), dtype=np.float32)[:k]
        if out is None:
            if into is not None:
                into.parent.mkdir(parents=True, exist_ok=True)
                out = np.lib.format.open_memmap(into, mode="w+", dtype=np.float32, shape=(n_rows, y.shape[-1]))
            else:
                out = np.empty((n_rows, y.shape[-1]), np.float32)
        out[row : row + len(y)] = y
        row += len(y)
        if on_batch:
            on_batch(i + 1, n_batches)
        if should_stop and should_stop():
            raise Cancelled("cancelled while computing embeddings")
    if isinstance(out, np.memmap):
        out.flush()
    return out[:row] if out is not None else np.zeros((0, 0), np.float32)


def get_or_compute(
    key: str, mode: str, cache_dir: Path, compute_fn: Callable[[], np.ndarray]
) -> tuple[np.ndarray, bool]:
    """Return (features, was_cached)."""
    if mode != "none" and key in _MEMORY:
        return _MEMORY[key], True
    path = cache_dir / f"{key}.npy"
    if mode == "disk" and path.is_file():
        arr = np.load(path)
        _MEMORY[key] = arr
        return arr, True
    arr = compute_fn().astype(np.float32, copy=False)
    if mode != "none":
        _MEMORY[key] = arr
    if mode == "disk":
        cache_dir.mkdir(parents=True, exist_ok=True)
        with atomic_path(path, suffix=".npy") as tmp:
            np.save(tmp, arr)
    return arr, False


def clear_memory() -> None:
    _MEMORY.clear()


def identity(asm: Any, project: Any, flip: bool = False) -> dict[str, Any]:
    """What the vectors depend on besides the data: with the examples, the cache key. Training and
    ``tlapp compare`` share it, so a backbone compared once trains without a second pass."""
    b = asm.backbone
    return {
        "backbone": b.entry.name,
        "weights": b.weights_source,
        "size": b.size,
        "task": project.task.type.value,
        "pooling": project.head.pooling,
        "options": project.backbone.options,
        "flip": flip,
    }


def pass_over(
    asm: Any,
    project: Any,
    examples: list[Example],
    encoder: LabelEncoder,
    batch_size: int,
    forward: Callable[[Any], Any],
    progress: Optional[Callable[[int, int], None]] = None,
    should_stop: Optional[Callable[[], bool]] = None,
    flip: bool = False,
    into: Optional[Path] = None,
) -> Callable[[], np.ndarray]:
    """The embedding pass for images (decoded once, no cache: one pass) or texts, ready to run."""
    if project.task.type.is_text:
        from tlapp.model.text_model import text_embeddings

        return lambda: text_embeddings(asm, examples, batch_size, should_stop, progress)
    from tlapp.base.tfenv import quiet_import
    from tlapp.data.pipelines import image_dataset

    tf, _ = quiet_import()
    ds = image_dataset(examples, encoder, asm.backbone.size, batch_size, cache="none", with_labels=False)
    if flip:
        ds = ds.map(lambda x: tf.reverse(x, axis=[2]))
    nb = -(-len(examples) // batch_size)
    return lambda: compute(forward, ds, nb, len(examples), progress, should_stop, into)
