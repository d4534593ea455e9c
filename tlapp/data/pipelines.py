"""``tf.data`` pipelines: parallel decode, caching and prefetch.

Images arrive as float32 0..255 (scaling lives inside the model); texts as raw
strings (the tokenizer lives inside the model).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

import numpy as np

from tlapp.base.memory import available_bytes, describe_bytes
from tlapp.base.tfenv import quiet_import
from tlapp.data.examples import Example
from tlapp.data.imageio import ImageProblem, load_rgb
from tlapp.data.labels import LabelEncoder

tf, _ = quiet_import()


def _decode_fn(size: int):

    def decode(path: bytes) -> np.ndarray:
        try:
            return load_rgb(path.decode("utf-8"), (size, size))
        except ImageProblem:
            # Scanned files can change on disk afterwards; a blank image beats a crash mid-epoch.
            return np.zeros((size, size, 3), np.uint8)

    return decode


SHUFFLE_BUFFER_BYTES = 256 * 2**20  # decoded images a shuffle buffer may hold, whatever their size


@dataclass(frozen=True)
class CachePlan:
    mode: str  # "memory" | "disk" | "none"
    why: str


def plan_cache(
    n_images: int, size: int, mode: str, budget_fraction: float, available: Optional[int] = None
) -> CachePlan:
    """Where decoded training images live between epochs. ``auto``: in memory when all of them
    (uint8, ``size``²×3 bytes each) fit ``budget_fraction`` of the available memory; otherwise
    they are decoded from the files again each epoch, so memory does not grow with the data set."""
    need = n_images * size * size * 3
    if mode != "auto":
        return CachePlan(mode, f"data.cache: {mode}")
    budget = int(budget_fraction * (available if available is not None else available_bytes()))
    if need <= budget:
        return CachePlan(
            "memory",
            f"{n_images:,} decoded images ({describe_bytes(need)}) cached in memory (budget {describe_bytes(budget)})",
        )
    return CachePlan(
        "none",
        f"{n_images:,} decoded images ({describe_bytes(need)}) exceed the memory budget "
        f"({describe_bytes(budget)}, data.cache_budget): decoded from disk each epoch",
    )


def finished(ds: Any, policy: str = "DATA") -> Any:
    """The options every tlapp pipeline runs with: how a distributed run shards it, and no autotuning.

    Sharding: ``DATA`` for in-memory data (embeddings, texts): there are no files to split. ``OFF``
    for image pipelines that :func:`image_dataset` already split by worker before decoding: letting
    ``tf.data`` shard them by element (its fallback for a list of paths) would make every worker
    decode every image and throw most away.

    Autotuning is off because deleting an autotuned iterator waits out its tuning thread's sleep,
    which doubles up to 60 s while the iterator lives, so every ``fit`` and pass ended in a pause of
    up to a minute: 16-58 s after MiniLM fine-tunes and 31 s after a Lite0 refit in the recipe
    benchmark, and a bare ``range().map().prefetch()`` read for 25 s took 15.9 s to delete (0.00 s
    without). Parallel maps then use the AUTOTUNE default (one call per core, up to 16) and buffers
    stay a few batches deep (the autotuner had buffered +1.2 GB during a 50,000-image pass until it
    was given a RAM budget); decoding 600 photos took the same time either way (1.40 s against 1.48 s).
    """
    options = tf.data.Options()
    options.experimental_distribute.auto_shard_policy = getattr(tf.data.experimental.AutoShardPolicy, policy)
    options.autotune.enabled = False
    return ds.with_options(options)


def image_dataset(
    examples: list[Example],
    encoder: LabelEncoder,
    size: int,
    batch_size: int,
    shuffle: bool = False,
    seed: int = 0,
    cache: str = "memory",
    cache_file: Optional[Path] = None,
    with_labels: bool = True,
    shard: tuple[int, int] = (1, 0),
) -> Any:
    """``tf.data`` of ``(float32 [B,size,size,3] in 0..255, target)`` batches.

    Order: the whole list of (path, label) is shuffled before anything is decoded (paths are
    cheap), so batches mix classes whatever the folder order or the data set's size. Without a
    cache it is reshuffled every epoch; with one, the cache is written in that shuffled order and
    a shuffle buffer sized in bytes (:data:`SHUFFLE_BUFFER_BYTES`) reorders each epoch. Images
    stay uint8 (4x smaller than float32) until the batch is formed. ``cache="disk"`` needs
    ``cache_file``, a prefix of its own per split (two pipelines sharing one would read each
    other's images). ``shard=(workers, index)``: this worker's part of the (shuffled, the same on
    every worker) list, so each image is decoded by one worker only.
    """
    n = len(examples)
    paths = tf.data.Dataset.from_tensor_slices([e.path for e in examples])
    ds = (
        tf.data.Dataset.zip((paths, tf.data.Dataset.from_tensor_slices(encoder.encode_all(examples))))
        if with_labels
        else paths
    )
    cached = cache == "memory" or (cache == "disk" and cache_file is not None)
    if shuffle and n:
        ds = ds.shuffle(n, seed=seed, reshuffle_each_iteration=not cached)
    if shard[0] > 1:
        ds = ds.shard(*shard)
    decode = _decode_fn(size)

    def load(p):
        img = tf.numpy_function(decode, [p], tf.uint8, stateful=False)
        img.set_shape((size, size, 3))
        return img

    ds = ds.map(
        (lambda p, y: (load(p), y)) if with_labels else load, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True
    )
    if cache == "memory":
        ds = ds.cache()
    elif cache == "disk" and cache_file is not None:
        cache_file.parent.mkdir(parents=True, exist_ok=True)
        ds = ds.cache(str(cache_file))
    if shuffle and cached and n:
        buffer = max(1, min(n, SHUFFLE_BUFFER_BYTES // (size * size * 3)))
        ds = ds.shuffle(buffer, seed=seed + 1, reshuffle_each_iteration=True)
    to_float = (lambda x, y: (tf.cast(x, tf.float32), y)) if with_labels else (lambda x: tf.cast(x, tf.float32))
    ds = ds.batch(batch_size).map(to_float, num_parallel_calls=tf.data.AUTOTUNE).prefetch(tf.data.AUTOTUNE)
    return finished(ds, "OFF" if shard[0] > 1 else "DATA")


def text_dataset(
    examples: list[Example],
    encoder: LabelEncoder,
    batch_size: int,
    shuffle: bool = False,
    seed: int = 0,
    with_labels: bool = True,
) -> Any:
    texts = tf.constant([e.text or "" for e in examples], dtype=tf.string)
    ds = tf.data.Dataset.from_tensor_slices(texts)
    if with_labels:
        ds = tf.data.Dataset.zip((ds, tf.data.Dataset.from_tensor_slices(encoder.encode_all(examples))))
    ds = ds.cache()
    if shuffle:
        ds = ds.shuffle(min(len(examples), 8192), seed=seed, reshuffle_each_iteration=True)
    return finished(ds.batch(batch_size).prefetch(tf.data.AUTOTUNE), "DATA")


def array_batches(
    x: np.ndarray,
    y: np.ndarray,
    batch_size: int,
    shuffle: bool = False,
    seed: int = 0,
    mirrored: Optional[np.ndarray] = None,
) -> Any:
    """Batches of rows of an in-memory array (cached embeddings or activations), each row stored once.

    Only row numbers are shuffled and batches are gathered from one tensor: slicing the matrix into
    a dataset and shuffling its rows held two more copies of it (the tensor and the shuffle
    buffer), 0.5 GB at 45,000 x 1280. With ``mirrored`` (the same rows of the mirrored images), each
    row is its mirrored copy half of the time, drawn anew each epoch, as a random flip of the image is.
    """
    xs, ys = tf.convert_to_tensor(x), tf.convert_to_tensor(y)
    ms = tf.convert_to_tensor(mirrored) if mirrored is not None else None
    idx = tf.data.Dataset.range(len(x))
    if shuffle and len(x):
        idx = idx.shuffle(len(x), seed=seed, reshuffle_each_iteration=True)

    def gather(i: Any) -> Any:
        rows = tf.gather(xs, i)
        if ms is not None:
            flip = tf.random.uniform(tf.shape(i), seed=seed) < 0.5
            rows = tf.where(tf.reshape(flip, [-1] + [1] * (len(x.shape) - 1)), tf.gather(ms, i), rows)
        return rows, tf.gather(ys, i)

    return finished(idx.batch(batch_size).map(gather).prefetch(2), "DATA")
