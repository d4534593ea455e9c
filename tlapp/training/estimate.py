"""How long a preset will take on this machine, before anything runs.

Every run records how fast its backbone embedded examples here (examples/s per
backbone and input size, in the local model store); the estimate uses that
measurement, or, before the first run, a rough figure from the backbone's size
— and says which. The GUI shows it beside each preset.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Optional

from tlapp.base.fsutil import atomic_write_text
from tlapp.base.paths import store_dir
from tlapp.config import Project
from tlapp.training.recipe import PRESETS, STEP_COST

FIXED_S = 25.0  # process start, model build, export and the fresh-process check (measured: 20-30 s here)
# Rough speed before a measurement: 2 CPU cores ran EfficientNet-Lite0 (3.4 M params) at 224 px at ~42
# images/s and MiniLM (22.7 M) at ~80 texts/s; cost grows with parameters and pixels.
_ROUGH = {"image": (42.0, 3.4, 224), "text": (80.0, 22.7, 64)}


@dataclass
class Estimate:
    low_s: float  # without a fine-tune
    high_s: float  # with the longest fine-tune the preset allows
    measured: bool  # speed measured on this machine (else a rough guess)


def _speeds_file():
    return store_dir("machine") / "speeds.json"


def _key(project: Project) -> str:
    b = project.backbone
    return f"{b.name}@{b.sequence_length if project.task.type.is_text else b.image_size}"


def record_speed(project: Project, examples_per_s: float) -> None:
    """Remember the measured embedding speed for this backbone and size."""
    f = _speeds_file()
    speeds = json.loads(f.read_text()) if f.is_file() else {}
    speeds[_key(project)] = round(examples_per_s, 2)
    atomic_write_text(f, json.dumps(speeds, indent=1))


def measured_speed(project: Project) -> Optional[float]:
    f = _speeds_file()
    return json.loads(f.read_text()).get(_key(project)) if f.is_file() else None


def _rough_speed(project: Project, params_m: float, size: int) -> float:
    base, ref_params, ref_size = _ROUGH["text" if project.task.type.is_text else "image"]
    scale = (ref_params / max(params_m, 0.1)) * (ref_size / max(size, 8)) ** (1 if project.task.type.is_text else 2)
    return base * scale


def estimate(project: Project, n_examples: int, params_m: float, size: int) -> dict[str, Estimate]:
    """Expected wall time of each preset for ``n_examples`` (train + validation)."""
    rate = measured_speed(project)
    measured = rate is not None
    rate = rate or _rough_speed(project, params_m, size)
    text = project.task.type.is_text
    out: dict[str, Estimate] = {}
    for name, preset in PRESETS.items():
        passes = 2 if preset["flip"] and not text else 1
        low = FIXED_S + passes * n_examples / rate
        n_train = n_examples * (1 - project.data.val_fraction)
        finetune = preset["epochs"] * (n_train * STEP_COST["text" if text else "image"] + n_examples - n_train) / rate
        cap = min(preset["budget_passes"] * n_examples / rate, preset["budget_cap_s"])
        out[name] = Estimate(low, low + min(finetune, project.train.time_budget_s or cap), measured)
    return out


def examples_used(counts: dict[str, int], max_per_class: Optional[int]) -> int:
    """How many examples a run will use (``data.max_per_class`` caps each class)."""
    return sum(min(n, max_per_class) if max_per_class else n for n in counts.values())


