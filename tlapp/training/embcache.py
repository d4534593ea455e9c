"""Embedding cache for frozen phases.

When the whole backbone is frozen and nothing augments the images, every
epoch would push the same pixels through the same network. We run the
feature extractor once, keep the pooled vectors (in memory for this process,
and in the model store's row store), and train only the head on them. The
physical limit of a frozen phase is one forward pass; this gets close to it.

The row store keeps one vector per *example* (its path, size and mtime, or its
text) for each backbone identity, not one matrix per list of examples. So
``tlapp compare`` on a sample, a training run in split order, and the next run
with one photo added all reuse what any of them computed, and only the missing
rows go through the network.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path
from typing import Any, Callable, Optional

import numpy as np

from tlapp.base.errors import Cancelled
from tlapp.base.fsutil import atomic_path
from tlapp.base.paths import store_dir, tlapp_home
from tlapp.data.examples import Example
from tlapp.data.labels import LabelEncoder

_MEMORY: dict[str, np.ndarray] = {}
# Embedding matrices larger than this are written to a memory-mapped file (50,000 x 1280 float32 is 256 MB).
MEMMAP_BYTES = 128 * 2**20


def example_key(e: Example) -> str:
    """What an example's vector depends on (its text, or its file's path, size and modification time),
    hashed: the store holds no copy of a person's texts, and every key has the same short width."""
    if e.text is not None:
        what = f"text|{e.text}"
    else:
        try:
            st = os.stat(e.path)
            what = f"{e.path}|{st.st_size}|{st.st_mtime_ns}"
        except OSError:
            what = f"{e.path}|missing"
    return hashlib.sha256(what.encode()).hexdigest()[:32]


def identity_hash(backbone_id: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(backbone_id, sort_keys=True, default=str).encode()).hexdigest()[:32]


def cache_key(examples: list[Example], backbone_id: dict[str, Any]) -> str:
    """One key for a list of examples in its order (the in-process cache and a run's scratch file)."""
    h = hashlib.sha256(identity_hash(backbone_id).encode())
    for e in examples:
        h.update(f"{example_key(e)}\n".encode())
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
                out = np.lib.format.open_memmap(into, mode="w+", dtype=np.float32, shape=(n_rows, *y.shape[1:]))
            else:
                out = np.empty((n_rows, *y.shape[1:]), np.float32)
        out[row : row + len(y)] = y
        row += len(y)
        if on_batch:
            on_batch(i + 1, n_batches)
        if should_stop and should_stop():
            raise Cancelled("cancelled while computing embeddings")
    if isinstance(out, np.memmap):
        out.flush()
    return out[:row] if out is not None else np.zeros((0, 0), np.float32)


def rows(
    examples: list[Example],
    backbone_id: dict[str, Any],
    store: Optional[Path],
    compute_fn: Callable[[list[Example]], np.ndarray],
) -> tuple[np.ndarray, int]:
    """The vectors of ``examples`` in their order, and how many came from a cache.

    In-process first (the whole list), then the row store in folder ``store`` (None: no store):
    only the examples it lacks are computed (``compute_fn`` of that sublist), and added to it
    while it stays under ``MEMMAP_BYTES``.
    """
    key = cache_key(examples, backbone_id)
    if key in _MEMORY:
        return _MEMORY[key], len(examples)
    if store is None or not storable(backbone_id):
        arr = compute_fn(examples).astype(np.float32, copy=False)
        _MEMORY[key] = arr
        return arr, 0
    path = store / f"{identity_hash(backbone_id)}.npz"
    keys, matrix = _read_store(path)
    where = {k: i for i, k in enumerate(keys)}
    wanted = [example_key(e) for e in examples]
    missing = [i for i, k in enumerate(wanted) if k not in where]
    new = compute_fn([examples[i] for i in missing]).astype(np.float32, copy=False) if missing else None
    dim = (new if new is not None else matrix).shape[-1]
    arr = np.empty((len(examples), dim), np.float32)
    if missing:
        arr[missing] = new
    found = [i for i, k in enumerate(wanted) if k in where]
    if found:
        arr[found] = matrix[[where[wanted[i]] for i in found]]
    _MEMORY[key] = arr
    if missing:
        _grow(path, keys, matrix, [wanted[i] for i in missing], new)
    return arr, len(found)


def _grow(path: Path, keys: np.ndarray, matrix: np.ndarray, added: list[str], new: np.ndarray) -> None:
    """Append rows to a store; past ``MEMMAP_BYTES`` the oldest rows go (edited or deleted files' vectors
    linger otherwise), so the store keeps serving the data in use instead of freezing when full."""
    all_keys = np.array([*keys.tolist(), *added], dtype="U32")
    grown = np.concatenate([matrix, new]) if len(keys) else new
    cap = MEMMAP_BYTES // max(grown.shape[1] * 4, 1)
    if len(new) > cap:
        return
    with atomic_path(path, suffix=".npz") as tmp:
        np.savez(tmp, keys=all_keys[-cap:], vectors=grown[-cap:])


def _read_store(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """(keys, vectors) of a row store; empty when absent or unreadable (a cache: recomputed, never fatal)."""
    try:
        with np.load(path, allow_pickle=False) as z:
            keys, vectors = z["keys"], z["vectors"]
        if len(keys) == len(vectors):
            return keys, vectors
    except (OSError, ValueError, KeyError):
        pass
    return np.array([], dtype=str), np.zeros((0, 0), np.float32)


def clear() -> None:
    """Forget every cached vector: this process's and the model store's row store (a benchmark or a test
    that must time or see the embedding pass itself)."""
    _MEMORY.clear()
    shutil.rmtree(store_dir("cache", "embeddings"), ignore_errors=True)


def identity(asm: Any, project: Any, flip: bool = False) -> dict[str, Any]:
    """What the vectors depend on besides the data: with the examples, the cache key. Training and
    ``tlapp compare`` share it, so a backbone compared once trains without a second pass."""
    b = asm.backbone
    source = b.weights_source.replace(", cached)", ")")  # Keras says "cached" after the first download
    return {
        "backbone": b.entry.name,
        "weights": source,
        "weights_changed": _mtime(source),
        # random weights differ with each build: their vectors belong to this very model object
        "model": id(b.model) if source == "random init" else None,
        "size": b.size,
        "task": project.task.type.value,
        "pooling": project.head.pooling,
        "options": project.backbone.options,
        "flip": flip,
    }


def _mtime(source: str) -> Optional[int]:
    """When the weights file or preset folder a ``source`` names ("file PATH", "preset PATH",
    "imagenet (presets/NAME)") last changed: re-imported weights must not be served old vectors."""
    kind, _, path = source.partition(" ")
    if kind == "imagenet" and path.startswith("(presets/"):
        kind, path = "preset", str(tlapp_home() / path.strip("()"))
    if kind not in ("file", "preset"):
        return None
    try:
        return os.stat(path).st_mtime_ns
    except OSError:
        return None


def storable(backbone_id: dict[str, Any]) -> bool:
    """Whether vectors may outlive this process: not from a random initialisation (another build differs)."""
    return backbone_id.get("weights") != "random init"


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
