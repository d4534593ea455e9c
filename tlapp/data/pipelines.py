"""``tf.data`` pipelines: parallel decode, caching and prefetch.

Images arrive as float32 0..255 (scaling lives inside the model); texts as raw
strings (the tokenizer lives inside the model).
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Optional

import numpy as np

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


def image_dataset(examples: list[Example], encoder: LabelEncoder, size: int, batch_size: int,
                  shuffle: bool = False, seed: int = 0, cache: str = "memory", cache_file: Optional[Path] = None,
                  with_labels: bool = True) -> Any:
    """``tf.data`` of ``(float32 [B,size,size,3] in 0..255, target)`` batches.

    ``cache="disk"`` needs ``cache_file``: a file prefix of its own per split, since two
    pipelines sharing a prefix would read each other's images.
    """
    from tlapp.base.tfenv import quiet_import

    tf, _ = quiet_import()
    paths = [e.path for e in examples]
    ds = tf.data.Dataset.from_tensor_slices(paths)
    decode = _decode_fn(size)

    def load(p):
        img = tf.numpy_function(decode, [p], tf.uint8, stateful=False)
        img.set_shape((size, size, 3))
        return tf.cast(img, tf.float32)

    ds = ds.map(load, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    if with_labels:
        ds = tf.data.Dataset.zip((ds, tf.data.Dataset.from_tensor_slices(encoder.encode_all(examples))))
    if cache == "memory":
        ds = ds.cache()
    elif cache == "disk" and cache_file is not None:
        cache_file.parent.mkdir(parents=True, exist_ok=True)
        ds = ds.cache(str(cache_file))
    if shuffle:
        ds = ds.shuffle(min(len(examples), 4096), seed=seed, reshuffle_each_iteration=True)
    return ds.batch(batch_size).prefetch(tf.data.AUTOTUNE)


def text_dataset(examples: list[Example], encoder: LabelEncoder, batch_size: int, shuffle: bool = False,
                 seed: int = 0, with_labels: bool = True) -> Any:
    texts = tf.constant([e.text or "" for e in examples], dtype=tf.string)
    ds = tf.data.Dataset.from_tensor_slices(texts)
    if with_labels:
        ds = tf.data.Dataset.zip((ds, tf.data.Dataset.from_tensor_slices(encoder.encode_all(examples))))
    ds = ds.cache()
    if shuffle:
        ds = ds.shuffle(min(len(examples), 8192), seed=seed, reshuffle_each_iteration=True)
    return ds.batch(batch_size).prefetch(tf.data.AUTOTUNE)
