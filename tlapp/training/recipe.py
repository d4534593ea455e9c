"""A classifier's plan, run: the head, then the fine-tune phases when they pay.

The phases are the person's (``train.phases``) or, when the file has none, the
preset's proposal (:func:`tlapp.presets.phases_of`) — the same list ``tlapp plan``
and the wizard show. What the preset adds is judgement, never other settings:

1. The head. ``solver: exact`` (the proposal): one embedding pass over
   train+validation (images: and one over their mirror images), cached; a linear
   head fitted to convergence, its L2 strength — and whether the mirrored copies
   and class weights help — chosen by k-fold cross-validation, live on the charts.
   ``solver: gradient`` (a head with hidden layers, or the person's choice): its
   epochs as written.
2. The fine-tune phases, as written, when :func:`tlapp.training.plan.decide` says
   they run (``train.finetune``); kept only if validation improves on the head
   alone by more than noise (under ``custom``: as Keras's best epoch says).
3. Without a kept fine-tune, an exact head is refit on train+validation: the
   final model has seen all the data, and the honest estimate is the out-of-fold one.
   A kept fine-tune that trained on cached activations (:mod:`cut_cache`) is
   trained again on train+validation, from the original backbone, for as many
   epochs as the first run (:func:`_refit_epochs`); its estimate is the first
   run's validation score.

Every choice leaves as one ``recipe_decision`` event and in ``metrics.json``.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from typing import Any, Optional, Protocol

import numpy as np

from tlapp.config import Phase, TaskType
from tlapp.deploy.evaluate import report_from_outputs
from tlapp.events import EPOCH_END, INSIGHT, PHASE_END, RECIPE_DECISION
from tlapp.model.tasks import metric_name
from tlapp.presets import mirror_averages, mirrors, phases_of, untouched
from tlapp.training.estimate import measured_speed, refits
from tlapp.training.head_trace import HeadTrace, SolverTrace
from tlapp.training.insight import write_curve, write_label_issues
from tlapp.training.linear_head import (
    L2_GRID,
    CVResult,
    LinearHead,
    choose_folds,
    cross_validate,
    cv_repeats,
    fit_linear_head,
    predict,
)
from tlapp.training.plan import PROOF_SE, Decision, decide, standard_error
from tlapp.training.strategy import agree


class Run(Protocol):
    """What the recipe uses of :class:`tlapp.training.run.Run` (which imports this module)."""

    project: Any
    splits: Any
    encoder: Any
    report: Any
    log: Any
    run_dir: Any
    classes: list[str]
    best: dict[str, Any]
    best_weights: Optional[list[Any]]
    history: list[dict[str, Any]]
    phases: list[Phase]
    recipe: dict[str, Any]
    evaluation: Optional[dict[str, Any]]
    embed_rate: Optional[float]
    use_class_weights: bool
    placement: Any  # strategy.Placement
    should_stop: Any

    @property
    def model(self) -> Any: ...
    def embeddings(self, examples: list[Any], flip: bool = False) -> np.ndarray: ...
    def class_weight(self) -> Optional[dict[int, float]]: ...
    def announce_phase(self, i: int, phase: Phase, start_epoch: int, cached: bool, **extra: Any) -> Any: ...
    def epoch_done(self, i: int, phase: Phase, epoch: int, logs: dict[str, float], opt: Any) -> None: ...
    def run_phase(self, i: int, phase: Phase, start_epoch: int, restore: bool) -> None: ...
    def keep_best(self) -> None: ...
    def keep_activations(self, phase: Phase) -> None: ...
    def save_best_weights(self) -> None: ...
    def can_refit(self) -> bool: ...
    def val_outputs(self) -> np.ndarray: ...
    def refit_on_all(self, index: int, phase: Phase, epochs: int) -> None: ...
    def write_history(self) -> None: ...


IMBALANCED = 1.5  # largest/smallest class ratio from which class weights are worth a CV candidate


def _sample_weights(run: Run, y: np.ndarray) -> Optional[np.ndarray]:
    """Balanced class weights per example, a CV candidate only where classes are imbalanced (>= 1.5x)."""
    if run.report.imbalance < IMBALANCED:
        return None
    cw = run.class_weight()
    return None if not cw else np.array([cw.get(int(c), 1.0) for c in y.astype(int).ravel()])


def _set_head(run: Run, head: LinearHead) -> None:
    layer = run.model.head.get_layer("predictions")
    layer.set_weights([head.kernel, head.bias])


def _logs(run: Run, outputs: np.ndarray, y: np.ndarray, prefix: str = "") -> dict[str, float]:
    """Loss and the task's metric, as Keras would log them."""
    task, eps = run.project.task.type, 1e-7
    if task == TaskType.regression:
        err = outputs[:, 0] - y.ravel()
        return {f"{prefix}loss": float((err**2).mean()), f"{prefix}mae": float(np.abs(err).mean())}
    if task.is_multi_label:
        loss = -(y * np.log(outputs + eps) + (1 - y) * np.log(1 - outputs + eps)).mean()
        return {f"{prefix}loss": float(loss), f"{prefix}accuracy": float(((outputs >= 0.5) == (y >= 0.5)).mean())}
    yi = y.astype(int).ravel()
    loss = -np.log(outputs[np.arange(len(yi)), yi] + eps).mean()
    return {f"{prefix}loss": float(loss), f"{prefix}{metric_name(task)}": float((outputs.argmax(1) == yi).mean())}


def _record_head(run: Run, phase: Phase, logs: dict[str, float], seconds: float) -> None:
    """The solved head as the phase's one epoch (what the best-weights bookkeeping and checkpoints read)."""
    run.log.emit(
        EPOCH_END,
        phase=0,
        phase_name="head",
        stage="fit",
        epoch=1,
        epochs=1,
        x=2.0,
        metrics=logs,
        seconds=round(seconds, 3),
        images_per_s=0.0,
        eta_s=0.0,
    )
    run.epoch_done(0, phase, 0, logs, None)
    run.log.emit(PHASE_END, index=0, name="head")


@dataclass
class Choice:
    cv: CVResult
    mirror: bool
    weights: Optional[np.ndarray]  # per-example class weights, or None
    by_mirror: dict[bool, float] = field(default_factory=dict)  # the best CV score with mirrored copies and without


def _cv(run: Run, x: np.ndarray, y: np.ndarray, xf: Optional[np.ndarray], units: int) -> tuple[Choice, HeadTrace]:
    """Cross-validate every candidate (mirrored copies or not, class weights or not, predictions averaged
    with the mirror image's or not) and keep the best.

    Each candidate is only an option: it is used when it scores better out of fold on this data.
    """
    task, seed = run.project.task.type, run.project.train.seed
    folds = choose_folds(y, task)
    w = _sample_weights(run, y)
    weight_options = [None, w] if w is not None else [None]
    mirror_options = [False, True] if xf is not None else [False]
    trace = HeadTrace(run, len(L2_GRID) * len(weight_options) * len(mirror_options), len(x))
    best: Optional[Choice] = None
    by_mirror: dict[bool, float] = {}
    averaging = {"mirrored": xf} if xf is not None and mirror_averages(run.project) else {}
    repeats = cv_repeats(len(x))
    for weights in weight_options:
        for mirror in mirror_options:
            extra = {"extra_x": xf, "extra_of": np.arange(len(x))} if mirror else {}
            cv = cross_validate(
                x,
                y,
                task,
                units,
                weights,
                folds=folds,
                seed=seed,
                should_stop=run.should_stop,
                on_candidate=lambda row, m=mirror, cw=weights is not None: trace.candidate(row, m, cw),
                **extra,
                **averaging,
                repeats=repeats,
            )
            by_mirror[mirror] = max(by_mirror.get(mirror, cv.score), cv.score)
            if best is None or (cv.score, -cv.loss) > (best.cv.score, -best.cv.loss):
                best = Choice(cv, mirror, weights)
    assert best is not None
    best.by_mirror = by_mirror
    trace.expected_iters = next((r["iterations"] for r in best.cv.grid if r["l2"] == best.cv.l2), 100.0) or 100.0
    return best, trace


def _fit(
    run: Run,
    x: np.ndarray,
    y: np.ndarray,
    xf: Optional[np.ndarray],
    idx: np.ndarray,
    l2: float,
    units: int,
    w: Optional[np.ndarray],
    trace: Optional[SolverTrace] = None,
) -> LinearHead:
    """Fit on the rows ``idx`` (plus their mirror copies when ``xf`` is given), live on ``trace``."""
    xs, ys, ws = x[idx], y[idx], None if w is None else w[idx]
    if xf is not None:
        xs, ys = np.vstack([xs, xf[idx]]), np.concatenate([ys, ys])
        ws = None if ws is None else np.concatenate([ws, ws])
    head = fit_linear_head(xs, ys, run.project.task.type, units, l2, ws, on_iter=trace, should_stop=run.should_stop)
    if trace is not None:
        trace.finish()
    return head


def _rate(run: Run) -> float:
    """Examples/s of a forward pass here (this run's, else the last measured); every worker agrees."""
    return agree(run.placement, run.embed_rate or measured_speed(run.project) or 1.0)


def run_recipe(run: Run) -> None:
    """Train ``run``'s model on its plan; leaves the weights to export in ``run.model``."""
    p = run.project
    run.phases = phases_of(p, len(run.splits.train))
    head, finetunes = run.phases[0], run.phases[1:]
    if head.solver == "exact":
        _exact_head(run, head, finetunes)
    else:
        _gradient_head(run, head, finetunes)


def _decide(run: Run, finetunes: list[Phase], score: Optional[float], scored_by: str, before: bool = False) -> Decision:
    """The fine-tune decision; ``before``: as it stands before the head has a score (None: it depends)."""
    return decide(
        run.project,
        finetunes,
        len(run.splits.train),
        len(run.splits.val),
        _rate(run),
        score,
        scored_by,
        judged=before or score is not None,
        classes=len(run.classes),
        fused=run.phases[0].solver == "exact",
    )


def _announce(run: Run, decision: Decision, summary: str, **extra: Any) -> None:
    run.recipe = {
        "preset": run.project.train.preset,
        **extra,
        "finetune": asdict(decision),
        "summary": f"{summary}; {'fine-tune' if decision.finetune else 'no fine-tune'}: {decision.reason}",
    }
    run.log.emit(RECIPE_DECISION, **run.recipe)


def _exact_head(run: Run, head: Phase, finetunes: list[Phase]) -> None:
    p, task = run.project, run.project.task.type
    examples = run.splits.train + run.splits.val
    units = int(run.model.head.output.shape[-1])
    run.announce_phase(0, head, 0, True, solver="exact: L2 strength by cross-validation, then L-BFGS to convergence")
    if finetunes and _decide(run, finetunes, None, "cross-validation", before=True).finetune is not False:
        run.keep_activations(finetunes[0])  # the pass below a fine-tune's cut is the embedding pass's first part
    # float32 as computed: a float64 copy of 50,000 x 1280 embeddings (and their mirrors) was 1 GB of peak RSS.
    x = run.embeddings(examples)
    xf = run.embeddings(examples, flip=True) if mirrors(p) else None
    y = run.encoder.encode_all(examples)
    choice, trace = _cv(run, x, y, xf, units)
    cv, w = choice.cv, choice.weights
    run.use_class_weights = w is not None
    xf = xf if choice.mirror else None
    finetunes, unflipped = _without_proposed_flip(run, finetunes, choice, len(examples))
    decision = _decide(run, finetunes, cv.score, "cross-validation")
    helped = (", mirrored copies helped" if choice.mirror else "") + (", class weights helped" if w is not None else "")
    helped += ", averaging each image with its mirror image helped" if cv.averaged else ""
    helped += unflipped
    _announce(
        run,
        decision,
        f"head: L2 {cv.l2:g} by {cv.folds}-fold CV{f' over {cv.repeats} draws of folds' * (cv.repeats > 1)} "
        f"(score {cv.score:.3f}{helped})",
        cv={
            "score": cv.score,
            "loss": cv.loss,
            "folds": cv.folds,
            "repeats": cv.repeats,
            "l2": cv.l2,
            "grid": cv.grid,
            "n": len(examples),
        },
        mirror_augmentation=choice.mirror,
        mirror_average=cv.averaged,
        class_weights=w is not None,
    )
    _insights(run, x, y, cv, units, w, examples)
    if not decision.finetune:
        _refit_on_all(run, head, x, y, xf, cv, units, w, examples, trace)
        return
    n_train = len(run.splits.train)
    t0 = time.time()
    fitted = _fit(run, x, y, xf, np.arange(n_train), cv.l2, units, w, trace.solver(n_train * (1 + (xf is not None))))
    _set_head(run, fitted)
    logs = {
        **_logs(run, predict(fitted, x[:n_train], task), y[:n_train]),
        **_logs(run, predict(fitted, x[n_train:], task), y[n_train:], "val_"),
    }
    _record_head(run, head, logs, time.time() - t0)
    start = run.model.model.get_weights()  # the original backbone and the head on the training split
    planned = refits(p, finetunes)  # a kept fine-tune then trains again: it keeps its last weights until then
    if not _finetune(run, finetunes, decision, rollback=not planned):
        if p.train.refit != "never":  # the attempt cost time, not accuracy: back to the head, refit on all the data
            run.recipe["summary"] += "; the head was refit on all the data"
            _refit_on_all(run, head, x, y, xf, cv, units, w, examples, None)
    elif planned and run.can_refit():
        _finetune_on_all(run, finetunes[0], start, lambda: _fit(run, x, y, xf, np.arange(len(x)), cv.l2, units, w))
    else:
        if planned:  # it went through the whole model after all (its activations did not fit): no refit
            run.keep_best()
        if p.train.refit == "always":
            _refit_after_finetune(run, cv.l2, units, w, examples)


def _without_proposed_flip(run: Run, finetunes: list[Phase], choice: Choice, n: int) -> tuple[list[Phase], str]:
    """The preset's proposed fine-tune flips images. Where cross-validation found mirrored copies worse for the
    head by more than a standard error (digits, text in photos), its fine-tune does not flip them either;
    within noise, it does (on 10 sign photos per class the flips were what the fine-tune learnt from). Phases
    the person wrote are theirs: a flip they set trains."""
    plain, mirrored = choice.by_mirror.get(False), choice.by_mirror.get(True)
    if plain is None or mirrored is None or mirrored >= plain - standard_error(plain, n):
        return finetunes, ""
    if not any(ph.augment.flip for ph in finetunes) or not untouched(run.project, len(run.splits.train)):
        return finetunes, ""
    unflipped = [ph.model_copy(update={"augment": ph.augment.model_copy(update={"flip": False})}) for ph in finetunes]
    return unflipped, f", mirrored copies scored {mirrored:.3f}, so the proposed fine-tune does not flip images"


def _insights(
    run: Run, x: np.ndarray, y: np.ndarray, cv: CVResult, units: int, w: Optional[np.ndarray], examples: list[Any]
) -> None:
    """The learning curve and the label check, from what the head has in hand (see :mod:`insight`)."""
    task = run.project.task.type
    if not task.is_single_label:
        return
    noun = "texts" if task.is_text else "images"
    issues = write_label_issues(run.run_dir, examples, y, cv.oof, run.classes, run.report.source, run.report.duplicates)
    curve = write_curve(run.run_dir, x, y, task, units, cv.l2, w, noun, run.classes, run.should_stop)
    run.log.emit(INSIGHT, curve=curve["sentence"], issues=len(issues["issues"]), estimated=issues["estimated_errors"])


def _refit_epochs(run: Run) -> int:
    """How many epochs the refit trains: those the first run trained, unless validation's best epoch beat
    the last one by more than noise (a small split cannot choose among epochs: on 20 photos it picked the
    first of six by two photos)."""
    rows = [h for h in run.history if h.get("phase") == 1 and not h.get("stage")]
    ran, best = len(rows), run.best
    if not run.project.train.keep_best or not rows or best.get("phase") != 1 or "value" not in best:
        return ran or int(best.get("epoch", 1))
    last = rows[-1].get(str(best.get("metric")))
    if last is None or not str(best.get("metric", "")).endswith("accuracy"):
        return int(best["epoch"])  # a loss: no standard error to judge by, Keras's best epoch decides
    told = float(best["value"]) - float(last) >= PROOF_SE * standard_error(float(best["value"]), len(run.splits.val))
    return int(best["epoch"]) if told else ran


def _finetune_on_all(run: Run, phase: Phase, start: list[Any], head_on_all: Any) -> None:
    """A kept fine-tune on cached activations, trained again on train+validation for :func:`_refit_epochs`
    epochs, from the original backbone and a head solved on all the data (``head_on_all()``): a refit, as the
    head alone gets (on sign30 a fine-tune that saw 80 % of the photos scored 1-2 points below one that saw
    all of them). The reported score stays the first run's, on the validation split it did not train on."""
    epochs = _refit_epochs(run)
    if epochs == run.best.get("epoch") and run.best_weights is not None:
        run.model.model.set_weights(run.best_weights)  # validation told that epoch apart: score it
    run.evaluation = {  # the model that the refit repeats, on the split it did not train on
        **report_from_outputs(run.val_outputs(), run.splits.val, run.encoder),
        "method": "validation",
        "note": f"the fine-tune after {epochs} epoch(s), before it was trained again on train+validation",
    }
    run.model.model.set_weights(start)
    _set_head(run, head_on_all())
    run.refit_on_all(len(run.phases), phase, epochs)
    run.recipe["refit"] = True
    run.recipe["summary"] += f"; then trained again on all the data for {epochs} epoch(s)"


def _refit_after_finetune(run: Run, l2: float, units: int, w: Optional[np.ndarray], examples: list[Any]) -> None:
    """``train.refit: always`` after a kept fine-tune: the head again, on train+validation vectors of the
    fine-tuned backbone (a fresh pass). The reported score is the fine-tuned model's on validation,
    measured before the refit (afterwards the model has seen those examples)."""
    task, n_train = run.project.task.type, len(run.splits.train)
    x = run.embeddings(examples, fresh=True)
    y = run.encoder.encode_all(examples)
    before = predict(LinearHead(*run.model.head.get_layer("predictions").get_weights()), x[n_train:], task)
    run.evaluation = {
        **report_from_outputs(before, run.splits.val, run.encoder),
        "method": "validation",
        "note": "the fine-tuned model on the validation split, before its head was refit on "
        "train+validation (train.refit: always)",
    }
    _set_head(run, fit_linear_head(x, y, task, units, l2, w, should_stop=run.should_stop))
    run.recipe["refit"] = True
    run.recipe["summary"] += "; the head was then refit on all the data (train.refit: always)"


def _gradient_head(run: Run, head: Phase, finetunes: list[Phase]) -> None:
    """A head trained by epochs (hidden layers, or solver: gradient), then the fine-tune by the same rule."""
    run.run_phase(0, head, 0, False)
    run.keep_best()
    accuracy = str(run.best.get("metric", "")).endswith("accuracy")
    score = float(run.best["value"]) if accuracy and "value" in run.best else None
    decision = _decide(run, finetunes, score, "validation")
    _announce(
        run,
        decision,
        f"head: {head.epochs} epoch(s) of {head.optimizer}"
        + (f" (validation {score:.3f})" if score is not None else ""),
    )
    if decision.finetune:
        _finetune(run, finetunes, decision)


def _finetune(run: Run, finetunes: list[Phase], decision: Decision, rollback: bool = True) -> bool:
    """Run the fine-tune phases and say whether they are kept (True), by whoever decided to run them:
    the person (``always``: kept), a measured prior (kept unless validation is worse than the head by
    more than noise), or the validation rule (kept only when validation beat the head by more than noise).
    ``rollback`` False: a kept fine-tune keeps its last weights (a refit follows and decides, see
    :func:`_finetune_on_all`)."""
    head_best, head_weights = dict(run.best), run.model.model.get_weights()
    head_val = float(head_best.get("value", 0.0))
    always = run.project.train.finetune == "always"
    own = always or bool(decision.prior)
    if own:  # the fine-tune runs on its own merits: its best epoch is chosen among its own epochs
        run.best = {}
    for i, phase in enumerate(finetunes, start=1):
        run.run_phase(i, phase, 0, False)
    improved = run.best.get("phase", 0) > 0  # a fine-tune epoch beat the head (the best key: metric, then loss)
    gain = float(run.best.get("value", head_val)) - head_val  # 0 while the head is still the best
    accuracy = str(run.best.get("metric", "")).endswith("accuracy")
    if not accuracy:
        gain = -gain  # a loss: lower is better
    if always:
        kept = True  # the person asked for it: its best epoch is kept, whatever validation says
    elif run.project.train.preset == "custom" or not accuracy:
        kept = improved  # phases as written, or a loss with no standard error: Keras's best epoch decides
    elif decision.prior:
        kept = gain > -PROOF_SE * standard_error(head_val, len(run.splits.val))
    else:
        kept = gain >= PROOF_SE * standard_error(head_val, len(run.splits.val))
    run.recipe["finetune_kept"], run.recipe["finetune_gain"] = kept, gain
    if kept:
        if rollback:
            run.keep_best()
        return True
    run.model.model.set_weights(head_weights)  # back to the head on the original backbone
    run.best = {**head_best, "restored": True}
    run.best_weights = head_weights
    run.save_best_weights()
    run.recipe["summary"] += (
        f"; validation scored the fine-tune {gain:+.3f} against the head, "
        + ("worse by more than noise" if decision.prior else "within noise")
        + ", so it was dropped"
    )
    return False


def _refit_on_all(
    run: Run,
    head: Phase,
    x: np.ndarray,
    y: np.ndarray,
    xf: Optional[np.ndarray],
    cv: CVResult,
    units: int,
    w: Optional[np.ndarray],
    examples: list[Any],
    trace: Optional[HeadTrace],
) -> None:
    """The final head on train+validation (``train.refit`` never: on train only), scored out of fold."""
    task = run.project.task.type
    refit = run.project.train.refit != "never"
    idx = np.arange(len(x)) if refit else np.arange(len(run.splits.train))
    t0 = time.time()
    fitted = _fit(
        run, x, y, xf, idx, cv.l2, units, w, trace.solver(len(idx) * (1 + (xf is not None))) if trace else None
    )
    _set_head(run, fitted)
    if trace is not None:
        logs = {**_logs(run, predict(fitted, x[idx], task), y[idx]), **_logs(run, cv.oof, y, "val_")}
        _record_head(run, head, logs, time.time() - t0)
    run.recipe["refit"] = refit
    # Honest evaluation without a held-out pass: every example scored by a head that never saw it.
    run.evaluation = {
        **report_from_outputs(cv.oof, examples, run.encoder),
        "method": "cross-validation",
        "note": f"out-of-fold predictions of {cv.folds}-fold cross-validation on {len(x)} examples",
    }
