"""Choosing a backbone by what matters: published accuracy, size, and CPU
latency measured on *this* machine; plus the one "recommended for your data" rule.

Latencies are measured on demand (a build without weights: speed does not
depend on the values) and cached per machine in the model store, so a table
can show them instantly next time and never mixes another computer's figures.
"""

from __future__ import annotations

import json
import os
import platform
import statistics
import time
from pathlib import Path
from typing import Callable, Optional

import numpy as np

from tlapp.backbones.catalog import BackboneEntry, check_backbone
from tlapp.base.fsutil import atomic_write_text
from tlapp.base.paths import store_dir
from tlapp.config import DEFAULT_TEXT_BACKBONE, Backbone

# The rule's knobs: few examples cannot use a large backbone's capacity, and a laptop
# pays for every parameter in each fine-tune step.
SMALL_DATA = 10_000  # examples
SMALL_DATA_MAX_PARAMS_M = 10.0
LARGE_DATA_MAX_PARAMS_M = 30.0
WITHIN_POINTS = 1.0  # "within a point of the best"


def machine_id() -> str:
    """What a latency figure is only valid for: host, CPU and core count."""
    return f"{platform.node()}|{platform.machine()}|{platform.processor() or '-'}|{os.cpu_count()} cpus"


def _cache_file() -> Path:
    return store_dir("machine") / "latency.json"


def _key(name: str, size: int) -> str:
    return f"{name}@{size}"


def _read_cache() -> dict:
    try:
        data = json.loads(_cache_file().read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) and data.get("machine") == machine_id() else {}


def cached_latencies() -> dict[str, float]:
    """``{"name@size": ms per image}`` measured on this machine (empty on another one)."""
    return dict(_read_cache().get("ms_per_image", {}))


def cached_latency(name: str, size: int) -> Optional[float]:
    return cached_latencies().get(_key(name, size))


def measure_latency(cfg: Backbone, batch: int = 8, repeats: int = 3) -> float:
    """Milliseconds per image of the backbone's forward pass on the CPU (median of ``repeats``
    batches after a warm-up), stored in the per-machine cache."""
    from tlapp.backbones.build import build_any_backbone  # loads TensorFlow

    entry, size, _ = check_backbone(cfg)
    built = build_any_backbone(cfg.model_copy(update={"weights": "none"}))
    if entry.modality == "text":
        x = {"token_ids": np.ones((batch, size), np.int32), "padding_mask": np.ones((batch, size), bool)}
        if "segment_ids" in [i.name for i in built.model.inputs]:
            x["segment_ids"] = np.zeros((batch, size), np.int32)
    else:
        x = np.random.default_rng(0).integers(0, 255, (batch, size, size, 3)).astype("float32")
    built.model(x, training=False)  # warm-up: graph building is not latency
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        built.model(x, training=False)
        times.append((time.perf_counter() - t0) * 1000 / batch)
    ms = statistics.median(times)
    data = _read_cache() or {"machine": machine_id(), "ms_per_image": {}}
    data["ms_per_image"][_key(entry.name, size)] = round(ms, 2)
    atomic_write_text(_cache_file(), json.dumps(data, indent=1))
    return ms


def recommend(entries: list[BackboneEntry], n_examples: int, available: Callable[[str], bool]) -> Optional[str]:
    """The backbone to suggest for ``n_examples``: among those with a published top-1 and weights
    here (all of them when none is here), within the size budget for the data, the smallest
    whose top-1 is within :data:`WITHIN_POINTS` of the best. Text: the embedded default."""
    if entries and entries[0].modality == "text":
        return DEFAULT_TEXT_BACKBONE
    cap = SMALL_DATA_MAX_PARAMS_M if n_examples < SMALL_DATA else LARGE_DATA_MAX_PARAMS_M
    pool = [e for e in entries if e.top1 is not None and not e.test_only and e.params_m <= cap]
    pool = [e for e in pool if available(e.name)] or pool
    if not pool:
        return None
    best = max(e.top1 or 0.0 for e in pool)
    near = [e for e in pool if (e.top1 or 0.0) >= best - WITHIN_POINTS]
    return min(near, key=lambda e: e.params_m).name
