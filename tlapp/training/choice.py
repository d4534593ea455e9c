"""Choosing the backbone before training (``backbone.choose_from``; preset ``best`` proposes the embedded
EfficientNet-Lite0/1/2, :func:`tlapp.presets.choices_of`).

Each candidate embeds the run's training and validation examples once and the linear head is
cross-validated on those vectors, exactly as ``tlapp compare`` ranks backbones and as the recipe
starts. The top of the leaderboard's own ranking (score, then loss) wins unless an earlier candidate
(the person's own backbone first, then the larger ones) scores within one standard error of it: the
one-standard-error rule (:func:`pick`). On 300 photos Lite2 led Lite0 by 1.3 points of CV accuracy,
within the 1.9-point standard error, and then scored 5 points lower on held-out photos
(``benchmarks/recipe.py``, sign30). The winner's vectors stay in the embedding cache, so the
training that follows does not embed again. Candidates whose passes would not
fit the preset's time budget are left out before Start, and the plan says which and why
(:func:`tlapp.training.estimate.plan_choice`, the one cost model).
"""

from __future__ import annotations

import time
from typing import Any

from tlapp.base.errors import WeightsError
from tlapp.training.estimate import Candidate, candidate_project


def pick(candidates: list[Candidate], n: int, classification: bool) -> tuple[Candidate, str]:
    """The winner among the scored ``candidates`` (in their order) on ``n`` examples, and why."""
    from tlapp.training.linear_head import ranking
    from tlapp.training.plan import standard_error

    scored = [c for c in candidates if c.score is not None]
    top = min(scored, key=lambda c: (*ranking(c.score, c.loss), candidates.index(c)))
    best = f"{top.name} scored best ({top.score:.3f} in cross-validation)"
    if not classification:  # R² has no binomial standard error: the ranking alone decides
        return top, best
    se = standard_error(top.score, n)
    first = next(c for c in scored if top.score - c.score <= se)
    if first is top:
        level = [c.name for c in scored if c is not top and top.score - c.score <= se]
        if level:  # the first candidate leads or ties: the others within noise change nothing
            return top, best + f"; {', '.join(level)} within one standard error ({se:.3f}), and {top.name} comes first"
        return top, best + (f", more than one standard error ({se:.3f}) above the others" if len(scored) > 1 else "")
    return first, (
        f"{top.name} scored {top.score:.3f} and {first.name} {first.score:.3f} in cross-validation: within one "
        f"standard error ({se:.3f} on {n} examples), so the earlier, cheaper {first.name} trains"
    )


def choose(run: Any, candidates: list[Candidate]) -> tuple[Candidate, str]:
    """Score each running candidate on the run's data (``run``: a :class:`tlapp.training.run.Run` with its
    data prepared); the winner is built and becomes the run's backbone."""
    from tlapp.backbones.weights import offline_status
    from tlapp.training.linear_head import choose_folds, cross_validate

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
    best, why = pick(candidates, len(examples), p.task.type.value != "regression")
    # The winner trains as it was scored: the very model whose vectors are cached, never a rebuild.
    run.project, run.asm = candidate_project(p, best.name), built[best.name]
    return best, why
