"""Presets as data, in one home: what ``fast``, ``balanced`` and ``best`` propose.

A preset is not a second engine beside the person's plan: it proposes ordinary
phases (the head, then a fine-tune) that ``tlapp init`` writes into the project
file, the wizard's Layers step shows as its starting ticks, and ``tlapp plan``
prints. Whatever the person then sets in ``train.phases`` is what trains; the
preset only decides whether the fine-tune phases run (``train.finetune``) and
shows that decision before Start (:mod:`tlapp.training.plan`).

Learning-rate defaults live here too, so the recipe, the CLI and the GUI never
carry their own copies. (keras-hub keeps each family's presets in one
``*_presets.py`` dict; AutoGluon's ``presets=`` expand into plain settings.)
"""

from __future__ import annotations

from typing import Any

from tlapp.base.errors import ConfigError
from tlapp.config import DEFAULT_IMAGE_BACKBONE, Augment, EarlyStopping, FreezePlan, Phase, Project, TaskType

# Per preset: mirrored embeddings for the head, fine-tune epochs, and the default fine-tune budget: so
# many passes over the data (a hand-written Keras recipe spends 10: five frozen and five fine-tune
# epochs), and never more than so many seconds unless train.time_budget_s says otherwise.
PRESETS: dict[str, dict[str, Any]] = {
    "fast": {
        "flip": False,
        "epochs": 0,
        "budget_passes": 0.0,
        "budget_cap_s": 0.0,
        "about": "the head only, solved exactly",
    },
    "balanced": {
        "flip": True,
        "epochs": 3,
        "budget_passes": 8.0,
        "budget_cap_s": 300.0,
        "about": "the head, then a short fine-tune when it pays within the time budget",
    },
    "best": {
        "flip": True,
        "epochs": 6,
        "budget_passes": 15.0,
        "budget_cap_s": 1800.0,
        "about": "the head, then a longer fine-tune with a larger time budget",
    },
}
PRESET_NAMES = (*PRESETS, "custom")
# The backbones preset best chooses among for images (backbone.choose_from): the embedded ones, which work
# offline. Lite1/Lite2 score 1.6/2.5 points above Lite0 on ImageNet and cost more per image; which pays on a
# person's photos is measured by the run itself (the cross-validated head on each one's embeddings).
EMBEDDED_IMAGE = ("efficientnet_lite0", "efficientnet_lite1", "efficientnet_lite2")

# Learning rates, one home. A head trained by gradient steps (hidden layers, or preset: custom).
HEAD_LR = 1e-3
# What a fine-tune trains: images the top 2 blocks at 3e-5; text the whole transformer at 2e-5 (the usual
# BERT-family recipe; on SMS spam the top 2 layers at 5e-5 lost 1.5 points on validation in 3 epochs).
# Images: Adam at 1e-4 first undid the solved head (held-out on sign10: 0.70, 0.72, then 0.79; sign30: 0.86,
# 0.84, then 0.90) - Adam moves every weight by about the rate whatever its gradient - while 3e-5 rose from
# the start (sign10: 0.79, 0.82, 0.82 ...; sign30 0.886 -> 0.904 in six epochs; digits level at 0.957).
# Images stop by no validation split: on 20 validation photos one epoch's 0.85 and the next's 0.75 are two
# photos (noise), and an early stop there ended the fine-tune at its third epoch. Their epochs are the
# benchmark's; the split only vetoes (see tlapp.training.recipe).
FINETUNE = {
    "image": {"learning_rate": 3e-5, "freeze": FreezePlan(mode="top_blocks", blocks=2), "patience": None},
    "text": {"learning_rate": 2e-5, "freeze": FreezePlan(mode="none"), "patience": 1},
}
# A language model: LoRA rank 8 on query/value, AdamW at 1e-3 with cosine decay. (SmolLM2 on 12
# paraphrases of a new fact: 36 steps at 1e-3 learnt it and kept "Paris"; 3e-3 learnt it too but then
# called France's capital "La Médicion".)
SFT_LR = 1e-3
# DPO moves the model away from where it starts, not towards fixed answers: half SFT's rate (measured in
# benchmarks/dpo.py: held-out preference accuracy and "Paris" kept on SmolLM2 with LoRA rank 8).
DPO_LR = 5e-4
# Optimizer steps each preset aims for, and its epoch limits: a few pairs need many passes to be learnt,
# thousands need one or two (more would only memorise them).
SFT_STEPS = {"fast": (24, 1, 8), "balanced": (40, 2, 12), "best": (80, 2, 20)}
# Adam on cached embeddings until validation loss stalls: a head with hidden layers is not convex.
HIDDEN_HEAD_EPOCHS = 200


def modality(task: TaskType) -> str:
    """'image', 'text' (a classifier of texts) or 'lm' (a language model): what prices a step and proposes a plan."""
    return "lm" if task.is_generative else "text" if task.is_text else "image"


def finetune_epochs(preset: str, kind: str = "text") -> int:
    """The preset's fine-tune epochs for ``kind`` ('image' or 'text'; ``fast`` proposes none, so a forced one
    takes balanced's). Images take twice as many: on cached activations an epoch of the top blocks is cheap,
    and their validation loss first rises for an epoch or two (see ``FINETUNE``)."""
    return (PRESETS[preset]["epochs"] or PRESETS["balanced"]["epochs"]) * (2 if kind == "image" else 1)


def sft_epochs(preset: str, n_train: int, batch_size: int) -> int:
    """Epochs for a language-model preset: enough passes for its target steps, within its limits."""
    target, least, most = SFT_STEPS.get(preset, SFT_STEPS["balanced"])
    steps = max(1, -(-max(n_train, 1) // batch_size))
    return int(min(most, max(least, -(-target // steps))))


def sft_phase(epochs: int = 4, task: TaskType = TaskType.sft) -> Phase:
    """The default tuning of a language model, SFT or DPO (stops when held-out loss stops improving)."""
    dpo = task is TaskType.dpo
    return Phase(
        name="dpo" if dpo else "sft",
        epochs=epochs,
        optimizer="adamw",
        learning_rate=DPO_LR if dpo else SFT_LR,
        schedule="cosine",
        freeze=FreezePlan(mode="lora", rank=8),
        use_embedding_cache=False,
        early_stopping=EarlyStopping(metric="val_loss", patience=2),
    )


def head_phase(hidden: bool) -> Phase:
    """The head on a frozen backbone: solved exactly (a linear head), or by Adam (hidden layers)."""
    if hidden:
        return Phase(
            name="head", epochs=HIDDEN_HEAD_EPOCHS, learning_rate=HEAD_LR, early_stopping=EarlyStopping(patience=10)
        )
    return Phase(name="head", solver="exact")


def finetune_phase(task: TaskType, preset: str, flip: bool) -> Phase:
    ft = FINETUNE[modality(task)]
    return Phase(
        name="finetune",
        epochs=finetune_epochs(preset, modality(task)),
        learning_rate=ft["learning_rate"],
        schedule="cosine",
        freeze=ft["freeze"],
        augment=Augment(flip=flip),
        early_stopping=EarlyStopping(metric="val_loss", patience=ft["patience"]) if ft["patience"] else None,
    )


def propose_phases(project: Project, n_train: int) -> list[Phase]:
    """The phases ``project``'s preset proposes for ``n_train`` training examples.

    Example::

        propose_phases(project, 200)  # [head (solver exact), finetune (top 2 blocks, 3 epochs)]
    """
    t, task = project.train, project.task.type
    preset = "balanced" if t.preset == "custom" else t.preset
    if task.is_generative:
        return [sft_phase(sft_epochs(preset, n_train, t.batch_size), task)]
    phases = [head_phase(bool(project.head.hidden))]
    if PRESETS[preset]["epochs"] or t.finetune == "always":
        phases.append(finetune_phase(task, preset, mirrors(project)))
    return phases


def mirrors(project: Project) -> bool:
    """Whether mirrored images take part: the head's CV candidates, and the proposed fine-tune's flips
    (images only; ``train.mirror: never`` and preset ``fast`` turn them off; ``custom`` mirrors as balanced)."""
    preset = PRESETS.get(project.train.preset, PRESETS["balanced"])
    return preset["flip"] and not project.task.type.is_text and project.train.mirror == "auto"


def mirror_averages(project: Project) -> bool:
    """Whether the head's CV also tries averaging each prediction with the mirror image's (test-time flip):
    in the recipe benchmark it lifted held-out accuracy on 10 sign-language photos per class from 0.770 to
    0.816, on 100 from 0.932 to 0.946; on handwritten digits, whose mirror images are other shapes, CV turns
    it down (0.951 plain against 0.943 averaged)."""
    return mirrors(project) and project.train.mirror_average == "auto"


def with_proposed_phases(project: Project, n_train: int) -> Project:
    """``project`` with its preset's proposal written out as ``train.phases`` (when it has none): the plan
    the person sees and edits (the Layers step's ticks, ``--set train.phases.1.epochs=...``) and that trains."""
    if project.train.phases:
        return project
    phases = propose_phases(project, n_train)
    return project.model_copy(update={"train": project.train.model_copy(update={"phases": phases})})


def phases_of(project: Project, n_train: int) -> list[Phase]:
    """What trains: the person's ``train.phases`` when there are any, else the preset's proposal."""
    phases = list(project.train.phases) or propose_phases(project, n_train)
    check_phases(project, phases)
    return phases


# Settings of a phase that an exact head solve has no use for (it has no epochs, steps or optimizer).
_EXACT_UNUSED = (
    "epochs",
    "optimizer",
    "learning_rate",
    "schedule",
    "step_every",
    "step_factor",
    "weight_decay",
    "early_stopping",
    "discriminative_lr",
    "steps_per_epoch",
    "augment",
    "use_embedding_cache",
)


def check_phases(project: Project, phases: list[Phase]) -> None:
    """Refuse, naming the field, a setting in ``phases`` that could not apply (never ignore it silently)."""
    t = project.train
    if project.task.type.is_generative and t.finetune != "auto":
        raise ConfigError(
            f"train.finetune: {t.finetune!r} decides a classifier's fine-tune after its head; a language "
            "model trains its phases as written (remove it, or change train.phases)"
        )
    for i, ph in enumerate(phases):
        where = f"train.phases.{i}"
        if ph.solver != "exact":
            continue
        if i != 0 or project.task.type.is_generative:
            raise ConfigError(
                f"{where}.solver: 'exact' solves a classifier's head on a frozen backbone, so only "
                "the first phase of a classifier can use it"
            )
        if project.head.hidden:
            raise ConfigError(
                f"{where}.solver: 'exact' needs a linear head, but head.hidden is "
                f"{project.head.hidden}; use solver: gradient"
            )
        if ph.freeze.mode != "all":
            raise ConfigError(
                f"{where}.freeze.mode: the exact head solve needs a frozen backbone (mode 'all'), "
                f"got {ph.freeze.mode!r}"
            )
        default = Phase()
        for name in _EXACT_UNUSED:
            if getattr(ph, name) != getattr(default, name):
                raise ConfigError(
                    f"{where}.{name}: the head is solved exactly (solver: exact), so "
                    f"{name} cannot apply (got {getattr(ph, name)!r}); remove it, or set "
                    f"{where}.solver: gradient to train the head by epochs"
                )
    if t.preset == "custom" or project.task.type.is_generative:
        return
    if phases[0].freeze.mode != "all":
        raise ConfigError(
            f"train.phases.0.freeze.mode: under preset {t.preset!r} the first phase is the head on "
            f"a frozen backbone (mode 'all'), got {phases[0].freeze.mode!r}; put the fine-tune "
            "after it, or use preset: custom"
        )


def finetune_freeze(project: Project) -> FreezePlan:
    """What the Layers step shows and edits: the last fine-tune phase's freeze plan (``all`` when the plan
    has no fine-tune; under ``custom`` the last phase's, whatever it is)."""
    phases = project.train.phases or propose_phases(project, 0)
    if project.task.type.is_generative or project.train.preset == "custom":
        return phases[-1].freeze
    if len(phases) > 1 and project.train.finetune != "never":
        return phases[-1].freeze
    return FreezePlan(mode="all")


def with_finetune_freeze(project: Project, plan: FreezePlan, n_train: int = 0) -> Project:
    """``project`` whose fine-tune trains what ``plan`` says (the Layers step's ticks).

    Under a preset, ``all`` (nothing of the backbone trains) turns the fine-tune off (``train.finetune:
    never``) and keeps its phase as written, epochs and learning rate included, for when layers are ticked
    again; ticks on a plan without a fine-tune add the default fine-tune phase, training what is ticked.
    """
    p = with_proposed_phases(project, n_train)
    phases, t, task = list(p.train.phases), p.train, p.task.type
    finetune = t.finetune
    if task.is_generative or t.preset == "custom":
        phases[-1] = phases[-1].model_copy(update={"freeze": plan})
    elif plan.mode == "all":
        finetune = "never" if len(phases) > 1 else finetune
    elif len(phases) > 1:
        phases[-1] = phases[-1].model_copy(update={"freeze": plan})
        finetune = "auto" if finetune == "never" else finetune
    else:
        preset = t.preset if PRESETS[t.preset]["epochs"] else "balanced"
        phases.append(finetune_phase(task, preset, mirrors(p)).model_copy(update={"freeze": plan}))
        finetune = "auto" if finetune == "never" else finetune
    return p.model_copy(update={"train": t.model_copy(update={"phases": phases, "finetune": finetune})})


def untouched(project: Project, n_train: int) -> bool:
    """Whether the phases are the preset's own proposal (a language model's: whatever epochs the data sized)."""
    phases, proposal = project.train.phases, propose_phases(project, n_train)
    if not phases:
        return True
    if project.task.type.is_generative:
        strip = lambda phs: [ph.model_copy(update={"epochs": 0}) for ph in phs]  # noqa: E731
        return strip(phases) == strip(proposal)
    return phases == proposal


def choices_of(project: Project) -> list[str]:
    """The backbones the run chooses among before training: ``backbone.choose_from`` as written, else preset
    ``best``'s proposal for an image task on the default backbone (the embedded ones). Fewer than two: no
    choice, ``backbone.name`` trains (``choose_from: [efficientnet_lite0]`` keeps best from choosing)."""
    b = project.backbone
    if b.choose_from:
        return list(b.choose_from) if len(b.choose_from) > 1 else []
    t = project.task.type
    proposes = (
        project.train.preset == "best"
        and not (t.is_text or t.is_generative)
        and b.name == DEFAULT_IMAGE_BACKBONE
        and b.weights == "imagenet"
        and project.train.strategy != "multi_worker"  # every worker must train the same backbone
    )
    return list(EMBEDDED_IMAGE) if proposes else []


def with_preset(project: Project, preset: str, n_train: int = 0) -> Project:
    """``project`` under another preset. Phases that are the old preset's untouched proposal become the new
    one's (``best`` proposes a longer fine-tune than ``balanced``); phases the person edited stay as they are."""
    proposal = untouched(project, n_train)
    t = project.train.model_copy(update={"preset": preset, "phases": [] if proposal else project.train.phases})
    if preset == "custom" and not t.phases:
        t = t.model_copy(update={"phases": propose_phases(project, n_train)})
    moved = project.model_copy(update={"train": t})
    return with_proposed_phases(moved, n_train) if proposal and preset != "custom" else moved


def with_finetune_choice(project: Project, choice: str, n_train: int = 0) -> Project:
    """``train.finetune`` set to ``choice``; "always" ("Fine-tune anyway") on a plan without a fine-tune phase
    adds the default one, so forcing a fine-tune always has one to run."""
    p = project.model_copy(update={"train": project.train.model_copy(update={"finetune": choice})})
    if choice == "always" and not p.task.type.is_generative and len(phases_of(p, n_train)) < 2:
        p = with_finetune_freeze(p, FINETUNE[modality(p.task.type)]["freeze"], n_train)
    return p


def with_head(project: Project) -> Project:
    """``project`` whose head phase fits its head: a head with hidden layers cannot be solved exactly, so a
    proposed exact head becomes the proposed gradient one (and back). A head phase the person wrote
    themselves is left alone (a mismatch is then an error that names it)."""
    if not project.train.phases or project.task.type.is_generative:
        return project
    first, hidden = project.train.phases[0], bool(project.head.hidden)
    if first not in (head_phase(True), head_phase(False)) or first == head_phase(hidden):
        return project
    phases = [head_phase(hidden), *project.train.phases[1:]]
    return project.model_copy(update={"train": project.train.model_copy(update={"phases": phases})})
