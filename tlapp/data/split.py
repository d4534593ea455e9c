"""The train/validation/test split: stratified, seeded, recorded in ``split.json``.

Each class (label set, or value quantile for regression) is split on its own,
and identical texts form one unit, so a duplicate never sits on both sides.
"""

from __future__ import annotations

import random
from collections import defaultdict
from dataclasses import dataclass
from typing import Any, Optional

import numpy as np

from tlapp.base.errors import DataError
from tlapp.config import TaskType
from tlapp.data.examples import Example


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


def split_examples(
    examples: list[Example], task: TaskType, val: float, test: float, seed: int, max_per_class: Optional[int] = None
) -> Splits:
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
        out.val += flat(items[n_test : n_test + n_val])
        out.train += flat(items[n_test + n_val :])
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
