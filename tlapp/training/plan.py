"""The plan a run will follow, shown before Start, and the fine-tune decision's one rule.

A preset fills in the person's plan (:func:`tlapp.presets.phases_of`) and then
decides one thing: whether the fine-tune phases run. Part of that decision is
known before any data passes through the backbone (``never``/``always``,
preset ``fast``, no validation split, a fine-tune over the time budget).

For single-label classification the rest comes from **measured priors**
(:data:`PRIORS`): what a kept fine-tune did to held-out accuracy against the
head alone on benchmark sets of the same modality, at the nearest data size.
A validation split of a few dozen examples cannot see a gain of a few points
(two standard errors of 50 examples are 10 points), so it no longer has to
prove one; it can only veto a fine-tune that made validation clearly worse.
Other tasks keep the validation rule: the fine-tune runs when the head leaves
error that the split can tell from noise, given before Start as a threshold
("runs if the head scores below 0.83 in cross-validation"). Both use
:func:`decide`, so what ``tlapp plan``, the wizard and the run say can never
disagree.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any, Optional

from tlapp.backbones.catalog import check_backbone
from tlapp.config import Phase, Project
from tlapp.data.pairs import pair_split_sizes
from tlapp.data.split import split_examples
from tlapp.presets import PRESETS, mirror_averages, mirrors, phases_of, with_preset
from tlapp.training.estimate import (
    FIXED_S,
    budget_s,
    embed_seconds,
    finetune_seconds,
    phase_seconds,
    plan_choice,
    refits,
    speed,
)

SATURATED = 0.99  # a CV score at or above this leaves nothing for a fine-tune to find
# A short fine-tune is expected to remove about this share of the head's remaining error (a prior, and a
# generous one: in benchmarks/recipe.py the kept fine-tunes gained 0.5-1.1 points on validation and then
# scored 0.6-1.0 below the head refit on all data on held-out images). It is only tried when the
# validation split can tell such a gain from noise, and only kept when it does.
GAIN_SHARE = 1 / 3
PROOF_SE = 2.0  # "tell from noise": a gain of at least this many standard errors of the validation score
ANYWAY = "train.finetune: always"


@dataclass(frozen=True)
class Prior:
    """What a kept fine-tune did on one benchmark set: its held-out accuracy minus the head alone's."""

    modality: str  # "image" | "text"
    per_class: int  # examples per class the run had (training + validation)
    gain: float
    set: str  # the set's name in benchmarks/recipe.py


# Measured by ``benchmarks/recipe.py`` as the preset runs it, ``train.finetune: always`` against ``never``,
# each scored on held-out examples that no method saw: ``benchmarks/results/finetune_priors.json``
# (tests/test_recipe.py fails when these differ from that file).
# Commit 36251d1, 2 CPU cores: the image fine-tune on cached activations, trained again on all the data when
# kept, no longer loses (eb79cb4's lost 1.2-8.4 points): +1.4 points at 30 sign photos per class, +0.2 to
# +0.4 at 90-100, nothing at 10; text gains two points on both sets.
PRIORS: tuple[Prior, ...] = (
    Prior("image", 10, 0.0, "sign10"),
    Prior("image", 30, 0.014, "sign30"),
    Prior("image", 100, 0.004, "sign100"),
    Prior("image", 90, 0.0022, "digits"),
    Prior("text", 100, 0.022, "sms200"),
    Prior("text", 500, 0.021, "sms1000"),
)
MIN_PRIOR_GAIN = 0.01  # one point of held-out accuracy: less is not worth a fine-tune's minutes


def prior_for(project: Project, per_class: float) -> Optional[Prior]:
    """The measured prior nearest to ``per_class`` (log scale) for this task's modality; None for
    tasks no benchmark measured (regression, multi-label) or without class counts."""
    task = project.task.type
    if not task.is_single_label or per_class <= 0:
        return None
    modality = "text" if task.is_text else "image"
    rows = [p for p in PRIORS if p.modality == modality]
    return min(rows, key=lambda p: abs(math.log(p.per_class / per_class)), default=None)


def standard_error(score: float, n: int) -> float:
    """Standard error of an accuracy ``score`` measured on ``n`` examples."""
    return math.sqrt(max(score * (1 - score), 1e-6) / max(n, 1))


def score_threshold(n_val: int) -> float:
    """The highest head score at which ``n_val`` validation examples could still see a fine-tune's likely
    gain: GAIN_SHARE (1 - s) >= PROOF_SE sqrt(s (1 - s) / n)  <=>  s <= g^2 n / (g^2 n + k^2)."""
    g2n = GAIN_SHARE**2 * n_val
    return min(SATURATED, g2n / (g2n + PROOF_SE**2))


@dataclass
class Decision:
    """Whether the fine-tune phases run. ``finetune`` None: it depends on the head's score (before Start)."""

    finetune: Optional[bool]
    reason: str
    estimate_s: float
    budget_s: float
    below: Optional[float] = None  # runs when the head's score is below this (finetune None)
    prior: Optional[str] = None  # the benchmark set whose measured gain decided it (validation may only veto)


def decide(
    project: Project,
    finetunes: list[Phase],
    n_train: int,
    n_val: int,
    rate: float,
    score: Optional[float] = None,
    scored_by: str = "cross-validation",
    judged: bool = True,
    classes: int = 0,
    fused: bool = False,
) -> Decision:
    """The fine-tune decision: the person's ``always``/``never``, else the ``auto`` rule.

    ``score`` is the head's (None before Start: the answer is then a threshold). ``judged`` False: the
    head has no accuracy to judge by (a head trained by epochs on a task monitored by its loss).
    ``classes``: how many the data has (the priors are per class); 0 leaves the validation rule.
    ``fused``: the fine-tune follows a solved head (its first phase reuses the head's pass, see
    :func:`tlapp.training.estimate.phase_seconds`).
    """
    p = project.train
    est = finetune_seconds(project, finetunes, n_train, n_val, rate, fused)
    budget = budget_s(project, n_train, n_val, rate, finetunes)

    def out(run: Optional[bool], why: str, below: Optional[float] = None, prior: Optional[str] = None) -> Decision:
        return Decision(run, why, est, budget, below, prior)

    if not finetunes:
        return out(False, "the plan has no fine-tune phase (add one on the Layers step or in train.phases)")
    if p.preset == "custom":
        return out(True, "preset custom runs every phase as written")
    if p.finetune == "never":
        return out(False, "fine-tune turned off (train.finetune: never)")
    if p.finetune == "always":
        return out(True, f"fine-tune forced ({ANYWAY}), about {est:.0f}s")
    if not PRESETS[p.preset]["epochs"]:
        return out(False, f"preset 'fast' trains the head only ({ANYWAY} runs the fine-tune)")
    if not n_val:
        return out(False, f"no validation split to check a fine-tune against ({ANYWAY} runs it unchecked)")
    if est > budget:
        return out(
            False,
            f"a fine-tune would take about {est:.0f}s here, over the {budget:.0f}s budget "
            f"(train.time_budget_s; {ANYWAY} runs it)",
        )
    if not judged:
        return out(
            False,
            f"a head trained by epochs on this task has no validation accuracy to judge a fine-tune "
            f"by ({ANYWAY} runs it)",
        )
    prior = prior_for(project, (n_train + n_val) / classes) if classes else None
    if prior is not None:
        return _by_prior(prior, project, score, scored_by, est, budget, out)
    below = score_threshold(n_val)
    if score is None:
        return out(
            None,
            f"runs if the head scores below {below:.3f} in {scored_by}: {n_val} validation examples "
            f"cannot tell a smaller gain from noise; about {est:.0f}s, within the {budget:.0f}s budget "
            f"({ANYWAY} runs it whatever the head scores)",
            below,
        )
    if score >= SATURATED:
        return out(
            False,
            f"the head alone scores {score:.3f} in {scored_by}: nothing left for a fine-tune to "
            f"find ({ANYWAY} runs it)",
            below,
        )
    if score >= below:
        se = standard_error(score, n_val)
        return out(
            False,
            f"the head scores {score:.3f} in {scored_by}; {n_val} validation examples could not "
            f"tell a fine-tune's likely gain (~{GAIN_SHARE * (1 - score):.1%}) from noise "
            f"({PROOF_SE:g} x {se:.1%} standard error), so all the data trains the head instead "
            f"({ANYWAY} runs it)",
            below,
        )
    return out(
        True,
        f"about {est:.0f}s of fine-tuning fits the {budget:.0f}s budget and the head leaves {1 - score:.1%} error",
        below,
    )


def _by_prior(
    prior: Prior, project: Project, score: Optional[float], scored_by: str, est: float, budget: float, out: Any
) -> Decision:
    """The auto rule where a benchmark measured this modality (see the module's docstring)."""
    noun = "texts" if project.task.type.is_text else "images"
    seen = (
        f"on {prior.set} ({prior.per_class} per class, the nearest measured size) a kept fine-tune scored "
        f"{prior.gain * 100:+.1f} points on held-out {noun} against the head alone (benchmarks/recipe.py)"
    )
    if prior.gain < MIN_PRIOR_GAIN:
        return out(False, f"{seen}, so all the data trains the head instead ({ANYWAY} runs it)", prior=prior.set)
    if score is not None and score >= SATURATED:
        return out(
            False,
            f"the head alone scores {score:.3f} in {scored_by}: nothing left for a fine-tune to find ({ANYWAY} "
            "runs it)",
            SATURATED,
            prior.set,
        )
    why = (
        f"{seen}; about {est:.0f}s, within the {budget:.0f}s budget. It is kept unless validation scores it "
        f"worse than the head by more than noise"
    )
    if score is None:
        return out(
            None, f"runs unless the head scores {SATURATED:.2f} or more in {scored_by}: {why}", SATURATED, prior.set
        )
    return out(True, why, SATURATED, prior.set)


@dataclass
class PlannedPhase:
    index: int
    name: str
    trains: str  # in words: "the head, solved exactly" / "top 2 blocks at lr 0.0001, 3 epochs"
    expected_s: float
    runs: str  # "yes" | "no" | "if the head scores below 0.83"
    phase: dict[str, Any] = field(default_factory=dict)


@dataclass
class Plan:
    preset: str
    n_train: int
    n_val: int
    speed: float  # examples/s of a forward pass here
    measured: bool
    phases: list[PlannedPhase]
    decision: Decision
    total_low_s: float
    total_high_s: float
    proposed: bool  # the phases come from the preset (train.phases is empty)
    generative: bool = False  # a language model: no head, no fine-tune decision
    choice: list[dict[str, Any]] = field(default_factory=list)  # backbone.choose_from's candidates, priced

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def trains_text(phase: Phase, refit: bool = False, mirrored: tuple[bool, bool] = (False, False)) -> str:
    """What a phase trains, in words a person reads on the plan (``refit``: it then trains again on all the
    data, see :func:`tlapp.training.estimate.refits`; ``mirrored``: whether the head's cross-validation also
    tries mirrored copies, and predictions averaged with the mirror image's)."""
    f = phase.freeze
    if phase.solver == "exact":
        whether = ["to add mirrored copies"] * mirrored[0]
        whether += ["to average each prediction with the mirror image's (2 passes per prediction)"] * mirrored[1]
        also = f", and whether {' and '.join(whether)}" if whether else ""
        return f"the head, solved exactly (L2 strength by cross-validation{also})"
    what = {
        "all": "the head only",
        "none": "every layer",
        "top_blocks": lambda: f"the top {f.blocks} block(s)",
        "up_to": lambda: f"the layers after {f.layer!r}",
        "fraction": lambda: f"the top {f.fraction:.0%} of layers",
        "patterns": lambda: f"layers matching {', '.join(f.patterns)}",
        "lora": lambda: f"LoRA adapters, rank {f.rank}, on {', '.join(f.targets)}",
    }[f.mode]
    what = what if isinstance(what, str) else what()
    aug = [k for k in ("flip", "rotation", "zoom", "contrast") if getattr(phase.augment, k)]
    again = ", then (when kept) again on train+validation from the start" if refit else ""
    return (
        f"{what}, {phase.epochs} epoch(s) at lr {phase.learning_rate:g} ({phase.optimizer}, {phase.schedule})"
        + (f", augment {'+'.join(aug)}" if aug else "")
        + again
    )


def make_plan(project: Project, n_train: int, n_val: int, rate: float, measured: bool, classes: int = 0) -> Plan:
    """The plan for ``project`` on ``n_train``/``n_val`` examples of ``classes`` classes at ``rate``
    examples/s, before Start."""
    phases = phases_of(project, n_train)
    generative = project.task.type.is_generative
    head_exact = phases[0].solver == "exact"
    if generative:
        est = sum(phase_seconds(project, ph, n_train, n_val, rate) for ph in phases)
        dec = Decision(True, "a language model trains its phases as written", est, est)
    else:
        dec = decide(
            project,
            phases[1:],
            n_train,
            n_val,
            rate,
            scored_by="cross-validation" if head_exact else "validation",
            judged=head_exact or project.task.type.is_single_label,
            classes=classes,
            fused=head_exact,
        )
    runs = {True: "yes", False: "no", None: f"if the head scores below {dec.below or 0:.3f}"}[dec.finetune]
    rows = []
    again = not generative and n_val > 0 and refits(project, phases[1:])
    for i, ph in enumerate(phases):
        first = i == 0 and not generative
        rows.append(
            PlannedPhase(
                i,
                ph.name,
                trains_text(ph, again and i > 0, (mirrors(project), mirror_averages(project))),
                phase_seconds(project, ph, n_train, n_val, rate, again and i > 0, head_exact and i == 1),
                "yes" if first or generative else runs,
                ph.model_dump(mode="json"),
            )
        )
    low = (
        FIXED_S
        + (0.0 if generative else embed_seconds(project, n_train + n_val, rate))
        + sum(r.expected_s for r in rows if r.runs == "yes")
    )
    high = low + sum(r.expected_s for r in rows if r.runs != "yes" and r.runs != "no")
    cands = plan_choice(project, n_train, n_val)
    extra = sum(c.expected_s for c in cands[1:] if c.runs)  # the first one's pass is the run's own
    return Plan(
        project.train.preset,
        n_train,
        n_val,
        rate,
        measured,
        rows,
        dec,
        low + extra,
        high + extra,
        not project.train.phases,
        generative,
        [c.as_dict() for c in cands],
    )


def split_sizes(project: Project, report: Any) -> tuple[int, int]:
    """(training, validation) examples the run will have: its own split of a scan report (or a pairs report)."""
    d = project.data
    if hasattr(report, "pairs"):
        n = len(report.pairs)
        n_val, n_test = pair_split_sizes(n, d.val_fraction, d.test_fraction)
        return n - n_val - n_test, n_val
    s = split_examples(report.examples, project.task.type, d.val_fraction, d.test_fraction, d.seed, d.max_per_class)
    return len(s.train), len(s.val)


def plan_for(project: Project, report: Any) -> Plan:
    """The plan for ``project`` on the data a scan ``report`` found, at this machine's speed."""
    n_train, n_val = split_sizes(project, report)
    entry, size, _ = check_backbone(project.backbone)
    classes = 0 if hasattr(report, "pairs") else len({str(e.label) for e in report.examples})
    return make_plan(project, n_train, n_val, *speed(project, entry.params_m, size), classes=classes)


def preset_plans(project: Project, report: Any) -> dict[str, Plan]:
    """Each preset's plan for this data (the wizard's preset labels show their times), under the same
    rules as the plan itself: a fine-tune the evidence already rules out is not in the time."""
    n_train, _ = split_sizes(project, report)
    return {name: plan_for(with_preset(project, name, n_train), report) for name in PRESETS}


def plan_lines(plan: Plan) -> list[str]:
    """The plan as the lines ``tlapp plan`` and the start of ``tlapp train`` print."""
    speed = "measured here" if plan.measured else "a rough guess until a first run measures it"
    src = "proposed by the preset" if plan.proposed else "from train.phases"
    out = [
        f"plan (preset {plan.preset}, {plan.n_train} training / {plan.n_val} validation examples, "
        f"phases {src}; speed {plan.speed:.0f} examples/s, {speed}):"
    ]
    if plan.choice:
        runs = [c for c in plan.choice if c["runs"]]
        out.append(
            "  backbone: chosen before training among "
            + ", ".join(f"{c['name']}@{c['size']} (~{c['expected_s']:.0f}s)" for c in runs)
            + " by the linear head's cross-validated score on each one's embeddings (an earlier one within one "
            "standard error of the top wins: it is cheaper); the winner's are reused"
        )
        out += [f"    {c['name']} left out: {c['why']}" for c in plan.choice if not c["runs"]]
    for r in plan.phases:
        t = f", ~{r.expected_s:.0f}s" if r.expected_s >= 1 else ""
        out.append(f"  {r.index}. {r.name}: {r.trains}{t}; runs: {r.runs}")
    d = plan.decision
    verdict = {True: "fine-tune: yes", False: "fine-tune: no", None: "fine-tune: decided after the head"}
    out.append(f"  {'training: yes' if plan.generative else verdict[d.finetune]} — {d.reason}")
    span = (
        f"{plan.total_low_s:.0f}s"
        if plan.total_high_s - plan.total_low_s < 5
        else f"{plan.total_low_s:.0f}-{plan.total_high_s:.0f}s"
    )
    out.append(f"  expected time: about {span} in all")
    return out
