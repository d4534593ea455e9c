"""Choosing the backbone before training (``backbone.choose_from``; preset ``best`` proposes the embedded
EfficientNet-Lite0/1/2, :func:`tlapp.presets.choices_of`).

Each candidate embeds the run's training and validation examples once and the linear head is
cross-validated on those vectors, exactly as ``tlapp compare`` ranks backbones and as the recipe
starts; the best wins by the leaderboard's own ranking (score, then loss; then the earlier candidate). The winner's vectors stay in the
embedding cache, so the training that follows does not embed again. Candidates whose passes would not
fit the preset's time budget are left out before Start, and the plan says which and why.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from typing import Any, Optional

from tlapp.backbones.catalog import check_backbone, get_entry
from tlapp.base.errors import BackboneError, WeightsError
from tlapp.config import Project
from tlapp.presets import choices_of
from tlapp.training.estimate import budget_s, speed


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


def choose(run: Any, candidates: list[Candidate]) -> Candidate:
    """Score each running candidate on the run's data (``run``: a :class:`tlapp.training.run.Run` with its
    data prepared); the winner is built and becomes the run's backbone."""
    from tlapp.backbones.weights import offline_status
    from tlapp.training.linear_head import choose_folds, cross_validate, ranking

    p = run.project
    examples = run.splits.train + run.splits.val
    y = run.encoder.encode_all(examples)
    units = 1 if p.task.type.value == "regression" else len(run.classes)
    folds = choose_folds(y, p.task.type)
    built: dict[str, Any] = {p.backbone.name: run.model}
    for c in candidates:
        q = candidate_project(p, c.name)
        if not c.runs:
            continue
        if not offline_status(c.name, c.size, q.backbone.options):
            c.runs, c.why = False, "no weights on this machine (see `tlapp weights list`)"
            continue
        t0 = time.time()
        run.project = q
        run.asm = built[c.name] if c.name in built else run.build()
        built[c.name] = run.asm
        x = run.embeddings(examples)
        c.reused = run.last_reused
        cv = cross_validate(x, y, p.task.type, units, folds=folds, seed=p.train.seed)
        c.score, c.loss, c.seconds = float(cv.score), float(cv.loss), round(time.time() - t0, 1)
    scored = [c for c in candidates if c.score is not None]
    if not scored:
        raise WeightsError(
            f"backbone.choose_from: none of {[c.name for c in candidates]} has weights on this machine "
            "(see `tlapp weights list`)"
        )
    best = min(scored, key=lambda c: (*ranking(c.score, c.loss), candidates.index(c)))
    # The winner trains as it was scored: the very model whose vectors are cached, never a rebuild.
    run.project, run.asm = candidate_project(p, best.name), built[best.name]
    return best
