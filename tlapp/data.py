"""Data intake: resolve the source, split it (stratified, seeded, recorded) and
build ``tf.data`` pipelines with parallel decode, caching and prefetch.
"""
from __future__ import annotations

import random
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

import numpy as np

from .config import Project, TaskType
from .errors import DataError
from .scan import Example, ScanReport, scan


@dataclass
class Splits:
    train: list[Example]
    val: list[Example]
    test: list[Example]
    seed: int

    def as_dict(self) -> dict[str, Any]:
        def row(e: Example) -> list[Any]:
            return [e.path, e.label] if e.text is None else [e.path, e.label, e.text]
        return {"seed": self.seed, **{k: [row(e) for e in getattr(self, k)] for k in ("train", "val", "test")}}


def _stratum(ex: Example, task: TaskType, edges: Optional[np.ndarray]) -> str:
    if task == TaskType.regression:
        return str(int(np.searchsorted(edges, float(ex.label))))
    return ";".join(ex.label) if isinstance(ex.label, list) else str(ex.label)


def split_examples(examples: list[Example], task: TaskType, val: float, test: float, seed: int,
                   max_per_class: Optional[int] = None) -> Splits:
    """Stratified split: each class (label set, or value quantile) is split on its own."""
    edges = None
    if task == TaskType.regression:
        edges = np.quantile([float(e.label) for e in examples], [0.2, 0.4, 0.6, 0.8])
    groups: dict[str, list[Example]] = defaultdict(list)
    for ex in sorted(examples, key=lambda e: e.path):
        groups[_stratum(ex, task, edges)].append(ex)
    rng = random.Random(seed)
    out = Splits([], [], [], seed)
    for key in sorted(groups):
        # Identical texts form one unit, so a duplicate never lands in both train and val.
        units: dict[str, list[Example]] = defaultdict(list)
        for ex in groups[key]:
            units[ex.text if ex.text is not None else ex.path].append(ex)
        items = list(units.values())
        rng.shuffle(items)
        if max_per_class:
            items = items[:max_per_class]
        n = len(items)
        n_test = int(round(n * test)) if n >= 3 else 0
        n_val = int(round(n * val)) if n >= 2 else 0
        if val > 0 and n >= 2:
            n_val = max(1, n_val)
        if n_val + n_test >= n:
            n_val, n_test = min(n_val, n - 1), 0
        flat = lambda us: [e for u in us for e in u]  # noqa: E731
        out.test += flat(items[:n_test])
        out.val += flat(items[n_test:n_test + n_val])
        out.train += flat(items[n_test + n_val:])
    if not out.train:
        raise DataError("the training split is empty; add data or lower val_fraction/test_fraction")
    return out


def cross_split_duplicates(splits: Splits) -> int:
    """Texts that occur in more than one split (only possible when a text carries different labels)."""
    seen: dict[str, set[str]] = defaultdict(set)
    for name in ("train", "val", "test"):
        for e in getattr(splits, name):
            if e.text is not None:
                seen[e.text].add(name)
    return sum(1 for s in seen.values() if len(s) > 1)


class LabelEncoder:
    """Maps labels to model targets for the task."""

    def __init__(self, task: TaskType, classes: list[str]) -> None:
        self.task, self.classes = task, list(classes)
        self.index = {c: i for i, c in enumerate(self.classes)}

    def encode(self, label: Any) -> np.ndarray:
        if self.task == TaskType.regression:
            return np.array([float(label)], np.float32)
        if self.task.is_multi_label:
            v = np.zeros(len(self.classes), np.float32)
            for lab in label:
                v[self.index[lab]] = 1.0
            return v
        return np.array(self.index[label], np.int32)

    def encode_all(self, examples: list[Example]) -> np.ndarray:
        return np.stack([self.encode(e.label) for e in examples]) if examples else np.zeros((0,), np.int32)


def _decode_fn(size: int):
    from .imageio import ImageProblem, load_rgb

    def decode(path: bytes) -> np.ndarray:
        try:
            return load_rgb(path.decode("utf-8"), (size, size))
        except ImageProblem:
            # Scanned files can change on disk afterwards; a blank image beats a crash mid-epoch.
            return np.zeros((size, size, 3), np.uint8)

    return decode


def image_dataset(examples: list[Example], encoder: LabelEncoder, size: int, batch_size: int,
                  shuffle: bool = False, seed: int = 0, cache: str = "memory", cache_dir: Optional[Path] = None,
                  with_labels: bool = True) -> Any:
    """``tf.data`` of ``(float32 [B,size,size,3] in 0..255, target)`` batches."""
    from .tfenv import quiet_import

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
    elif cache == "disk" and cache_dir is not None:
        cache_dir.mkdir(parents=True, exist_ok=True)
        ds = ds.cache(str(cache_dir / "tfdata"))
    if shuffle:
        ds = ds.shuffle(min(len(examples), 4096), seed=seed, reshuffle_each_iteration=True)
    return ds.batch(batch_size).prefetch(tf.data.AUTOTUNE)


def _tfds_load(name: str, data_dir: Optional[str]) -> tuple[Any, Any, Any]:
    """(tfds module, train split as (x, label) pairs, info); offline, one clear line."""
    from .tfenv import quiet_import

    quiet_import()
    try:
        import tensorflow_datasets as tfds

        ds, info = tfds.load(name, split="train", as_supervised=True, with_info=True, data_dir=data_dir)
    except Exception as e:
        raise DataError(
            f"TFDS dataset {name!r} could not be loaded from data_dir={data_dir or '~/tensorflow_datasets'} "
            f"and could not be downloaded ({type(e).__name__}: {str(e).splitlines()[0][:160]})"
        ) from None
    return tfds, ds, info


def materialize_tfds(name: str, data_dir: Optional[str], out_root: Path) -> Path:
    """Write a TFDS image-classification dataset as a folder per class, once."""
    target = out_root / name.replace("/", "_").replace(":", "_")
    if (target / ".complete").is_file():
        return target
    tfds, ds, info = _tfds_load(name, data_dir)
    names = info.features["label"].names
    from PIL import Image

    for i, (img, lab) in enumerate(tfds.as_numpy(ds)):
        d = target / names[int(lab)]
        d.mkdir(parents=True, exist_ok=True)
        Image.fromarray(img.squeeze() if img.shape[-1] == 1 else img).save(d / f"{i:06d}.png")
    (target / ".complete").write_text("ok")
    return target


def materialize_tfds_text(name: str, data_dir: Optional[str], out_root: Path) -> Path:
    """Write a TFDS text-classification dataset (e.g. imdb_reviews) as a text,label CSV, once."""
    import csv

    target = out_root / f"{name.replace('/', '_').replace(':', '_')}.csv"
    if target.is_file():
        return target
    tfds, ds, info = _tfds_load(name, data_dir)
    names = info.features["label"].names
    out_root.mkdir(parents=True, exist_ok=True)
    tmp = target.with_suffix(".tmp")
    with open(tmp, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["text", "label"])
        for text, lab in tfds.as_numpy(ds):
            w.writerow([text.decode("utf-8", errors="replace"), names[int(lab)]])
    tmp.replace(target)
    return target


def resolve_source(project: Project, project_file: Optional[Path]) -> Path:
    from .config import resolve_data_path
    from .paths import store_dir

    if project.data.source == "tfds" and project.task.type.is_text:
        return materialize_tfds_text(project.data.tfds_name or "", project.data.tfds_data_dir,
                                     store_dir("datasets", "tfds"))
    if project.data.source == "tfds":
        return materialize_tfds(project.data.tfds_name or "", project.data.tfds_data_dir, store_dir("datasets", "tfds"))
    path = resolve_data_path(project, project_file)
    assert path is not None
    return path


def scan_project(project: Project, project_file: Optional[Path], progress=None) -> ScanReport:
    if project.task.type.is_text:
        from .textdata import scan_text

        d = project.data
        report = scan_text(resolve_source(project, project_file), project.task.type.value, d.text_column,
                           d.label_column, d.encoding)
        report.require_usable()
        return report
    report = scan(resolve_source(project, project_file), project.task.type.value, progress=progress)
    report.require_usable()
    return report
