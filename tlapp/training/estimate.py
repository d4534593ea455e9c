"""How long a plan will take on this machine: the one cost model.

Every run records how fast its backbone embedded examples here (examples/s per
backbone and input size, in the local model store); the estimate uses that
measurement, or, before the first run, a rough figure from the backbone's size
— and says which. The recipe's fine-tune decision, ``tlapp plan``, and the
wizard's preset labels all price phases with the functions below.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from typing import Any, Optional

from tlapp.backbones.catalog import check_backbone, get_entry
from tlapp.base.errors import BackboneError
from tlapp.base.fsutil import atomic_write_text
from tlapp.base.paths import store_dir
from tlapp.config import Phase, Project
from tlapp.presets import PRESETS, choices_of, mirrors, modality

FIXED_S = 25.0  # process start, model build, export and the fresh-process check (measured: 20-30 s here)
# Rough speed before a measurement: 2 CPU cores ran EfficientNet-Lite0 (3.4 M params) at 224 px at ~42
# images/s and MiniLM (22.7 M) at ~80 texts/s, and SmolLM2-135M took 1-3 s per LoRA step of 4 x 128
# tokens; cost grows with parameters and pixels (or tokens).
_ROUGH = {"image": (42.0, 3.4, 224), "text": (80.0, 22.7, 64), "lm": (4.0, 135.0, 128)}
# Cost of one fine-tune training step relative to a forward pass, top blocks trainable, measured on
# this project's CPU machine (EfficientNet-Lite0 top 2 blocks: 42 img/s forward vs 29 img/s training,
# validation included; MiniLM top 2 layers on length-trimmed batches: about 2x).
STEP_COST = {"image": 1.5, "text": 2.0, "lm": 2.0}
# A DPO example is two sequences (chosen and rejected) in one pass: benchmarks/dpo.py measured a step of 4
# triples at 1.56x an SFT step of their 4 chosen answers on SmolLM2 (2 CPU cores).
DPO_COST = 1.6
# The top two blocks of EfficientNet-Lite0 (7x7 resolution) cost about this share of a whole step: what a
# fine-tune epoch on cached activations costs (tlapp.training.cut_cache). Measured on sign30, 2 cores: an
# epoch of 240 mirrored photos + 60 validation took 2.4 s at a forward rate of 36 photos/s (0.21), an
# epoch of all 300 took 2.7 s (0.22).
CUT_SHARE = 0.22
# Building a phase's training step (Keras traces its first batch) costs a fixed time that no per-example speed
# captures. Measured here (2 CPU cores) as a phase's first epoch minus a later one: the top two Lite0 blocks on
# cached activations 3.4-4.6 s, MiniLM-L6 16-23 s; SmolLM2's first LoRA step took 53 s against a 2.4 s median.
SETUP_S = {"image": 4.0, "text": 20.0, "lm": 50.0}


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
    kind = modality(project.task.type)
    base, ref_params, ref_size = _ROUGH[kind]
    scale = (ref_params / max(params_m, 0.1)) * (ref_size / max(size, 8)) ** (2 if kind == "image" else 1)
    return base * scale


def speed(project: Project, params_m: float, size: int) -> tuple[float, bool]:
    """(examples/s of a forward pass here, whether it was measured rather than guessed)."""
    rate = measured_speed(project)
    return (rate, True) if rate else (_rough_speed(project, params_m, size), False)


def phase_seconds(
    project: Project, phase: Phase, n_train: int, n_val: int, rate: float, refit: bool = False, fused: bool = False
) -> float:
    """Expected seconds of one phase, beyond the embedding pass that every run makes; ``refit``: and of its
    second run on all the data (see :func:`refits`); ``fused``: it follows a solved head, whose embedding pass
    keeps the activations below its cut (:mod:`tlapp.training.cut_cache`) - the mirrored ones too when the
    head's candidates include mirrored copies."""
    if on_embeddings(phase):
        return 0.0  # a fraction of a second
    setup = setup_seconds(project, phase, refit)
    n = min(n_train, phase.steps_per_epoch * project.train.batch_size) if phase.steps_per_epoch else n_train
    if on_activations(project, phase):  # one pass below the cut (and its mirror), then epochs of the top
        flips = 2 if phase.augment.flip else 1
        below = (n_train * flips + n_val * (flips if refit else 1)) / max(rate, 1e-9)
        if fused:
            below = 0.0 if mirrors(project) or not phase.augment.flip else (n_train + n_val) / max(rate, 1e-9)
        again = (n_train + n_val) * STEP_COST["image"] if refit else 0.0
        return setup + below + phase.epochs * (n * STEP_COST["image"] + n_val + again) * CUT_SHARE / max(rate, 1e-9)
    cost = 1.0 if phase.freeze.mode == "all" else STEP_COST[modality(project.task.type)]
    pair = DPO_COST if project.task.type.value == "dpo" else 1.0
    return setup + phase.epochs * (n * cost + n_val) * pair / max(rate, 1e-9)


def setup_seconds(project: Project, phase: Phase, refit: bool = False) -> float:
    """The fixed cost of building ``phase``'s training step (:data:`SETUP_S`; twice with a ``refit``); none for a
    phase on cached embeddings."""
    return 0.0 if on_embeddings(phase) else SETUP_S[modality(project.task.type)] * (2 if refit else 1)


def on_embeddings(phase: Phase) -> bool:
    """Whether ``phase`` trains on cached embeddings: a solved head, or a frozen backbone without augmentation."""
    return phase.solver == "exact" or (
        phase.freeze.mode == "all" and phase.use_embedding_cache and not phase.augment.enabled
    )


def cut_why_not(phase: Phase) -> str:
    """Why a fine-tune ``phase`` of an image backbone cannot train on cached activations
    (:mod:`tlapp.training.cut_cache`), or "" when its settings allow it; the run also checks its devices,
    the backbone's graph and the memory."""
    if not phase.use_embedding_cache:
        return "use_embedding_cache is off"
    a = phase.augment
    return "rotation, zoom and contrast change every epoch's images" if a.rotation or a.zoom or a.contrast else ""


def on_activations(project: Project, phase: Phase) -> bool:
    """Whether an image fine-tune of the top blocks is priced as training on cached activations (other
    freeze plans are priced through the whole model)."""
    return modality(project.task.type) == "image" and phase.freeze.mode == "top_blocks" and not cut_why_not(phase)


def refits(project: Project, finetunes: list[Phase]) -> bool:
    """Whether a kept fine-tune is trained again on train+validation (``train.refit``): one phase on cached
    activations (:func:`on_activations`), so a second run costs little; the recipe's one rule for it."""
    return len(finetunes) == 1 and on_activations(project, finetunes[0]) and project.train.refit != "never"


def finetune_seconds(
    project: Project, phases: list[Phase], n_train: int, n_val: int, rate: float, fused: bool = False
) -> float:
    """The fine-tune ``phases``; ``fused``: after a solved head (the first of them reuses its pass)."""
    again = refits(project, phases) and n_val > 0
    return sum(phase_seconds(project, ph, n_train, n_val, rate, again, fused and i == 0) for i, ph in enumerate(phases))


def budget_s(project: Project, n_train: int, n_val: int, rate: float, phases: Optional[list[Phase]] = None) -> float:
    """The most a preset's fine-tune may take: ``train.time_budget_s``, else so many passes, capped, plus the
    fixed cost of building the training steps of ``phases`` (:func:`setup_seconds`), which a budget in passes
    over the data cannot scale with."""
    preset = PRESETS.get(project.train.preset, PRESETS["balanced"])
    if project.train.time_budget_s:
        return project.train.time_budget_s
    phases = phases or []
    again = refits(project, phases) and n_val > 0
    setup = sum(setup_seconds(project, ph, again) for ph in phases)
    return min(preset["budget_passes"] * (n_train + n_val) / max(rate, 1e-9), preset["budget_cap_s"]) + setup


def embed_seconds(project: Project, n_examples: int, rate: float) -> float:
    """The embedding pass (and its mirrored twin for images when the preset asks for one)."""
    return (2 if mirrors(project) else 1) * n_examples / max(rate, 1e-9)


@dataclass
class Candidate:
    name: str
    size: int
    expected_s: float  # its embedding pass over training + validation, at this machine's speed
    measured: bool  # that speed was measured here (else a rough guess from its size)
    runs: bool = True
    why: str = ""  # why it was left out
    score: Optional[float] = None  # out-of-fold accuracy (R² for regression) of the linear head
    loss: Optional[float] = None
    seconds: float = 0.0
    reused: int = 0  # vectors that came from the cache

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def candidate_project(project: Project, name: str) -> Project:
    """``project`` with backbone ``name``: ImageNet weights, and the person's image size if they changed it
    from their backbone's own (the wizard always writes one), else the candidate's own size."""
    b = project.backbone
    if name == b.name:
        return project
    own = get_entry(b.name).default_size
    size = b.image_size if b.image_size not in (None, own) else None
    cand = b.model_copy(update={"name": name, "weights": "imagenet", "options": {}, "image_size": size})
    return project.model_copy(update={"backbone": cand})


def plan_choice(project: Project, n_train: int, n_val: int) -> list[Candidate]:
    """The candidates, priced before Start; those past the preset's time budget do not run.

    The first candidate always runs (it is what trains if the choice is cut short); each further one
    runs while all the passes together fit in the budget a preset gives its fine-tune.
    """
    out: list[Candidate] = []
    spent = 0.0
    for name in choices_of(project):
        p = candidate_project(project, name)
        try:
            entry, size, _ = check_backbone(p.backbone, "image")
        except BackboneError as e:
            raise BackboneError(f"backbone.choose_from: {name!r}: {e}") from None
        rate, measured = speed(p, entry.params_m, size)
        secs = (n_train + n_val) / max(rate, 1e-9)
        c = Candidate(name, size, round(secs, 1), measured)
        limit = budget_s(p, n_train, n_val, rate)
        if out and spent + secs > limit:
            c.runs, c.why = False, f"its pass (~{secs:.0f}s) would take the choice past the {limit:.0f}s budget"
        else:
            spent += secs
        out.append(c)
    return out


def examples_used(counts: dict[str, int], max_per_class: Optional[int]) -> int:
    """How many examples a run will use (``data.max_per_class`` caps each class)."""
    return sum(min(n, max_per_class) if max_per_class else n for n in counts.values())
