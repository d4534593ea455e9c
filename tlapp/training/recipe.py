"""The default recipe: presets ``fast``, ``balanced`` and ``best``.

1. One embedding pass over train+validation (and, for images, one over their
   mirror images), cached.
2. A linear head fitted to convergence, its L2 strength — and whether the
   mirrored copies help — chosen by k-fold cross-validation on the embeddings.
3. A fine-tune of the top blocks only when it can pay: there is error left to
   remove, there is a validation split to prove it, and its cost (estimated from
   the measured speed of the embedding pass) fits the time budget. Its weights
   are kept only if validation improves on the head alone.
4. Without a fine-tune, the head is refit on train+validation: the final model
   has seen all the data, and the honest estimate is the out-of-fold one.

Every choice leaves as one ``recipe_decision`` event and in ``metrics.json``.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any, Optional, Protocol

import numpy as np

from tlapp.config import Augment, EarlyStopping, FreezePlan, Phase, TaskType
from tlapp.deploy.evaluate import report_from_outputs
from tlapp.events import EPOCH_END, PHASE_END, PHASE_START, RECIPE_DECISION
from tlapp.model.tasks import metric_name
from tlapp.training.strategy import agree
from tlapp.training.linear_head import (CVResult, LinearHead, choose_folds, cross_validate, fit_linear_head,
                                        predict)



class Run(Protocol):
    """What the recipe uses of :class:`tlapp.training.run.Run` (which imports this module)."""

    project: Any
    splits: Any
    encoder: Any
    report: Any
    log: Any
    best: dict[str, Any]
    best_weights: Optional[list[Any]]
    recipe: dict[str, Any]
    evaluation: Optional[dict[str, Any]]
    embed_rate: Optional[float]
    use_class_weights: bool
    placement: Any  # strategy.Placement

    @property
    def model(self) -> Any: ...
    def embeddings(self, examples: list[Any], flip: bool = False) -> np.ndarray: ...
    def class_weight(self) -> Optional[dict[int, float]]: ...
    def epoch_done(self, i: int, phase: Phase, epoch: int, logs: dict[str, float], opt: Any) -> None: ...
    def run_phase(self, i: int, phase: Phase, start_epoch: int, restore: bool) -> None: ...
    def keep_best(self) -> None: ...
    def save_best_weights(self) -> None: ...

# Cost of one fine-tune training step relative to a forward pass, top blocks trainable, measured on
# this project's CPU machine (EfficientNet-Lite0 top 2 blocks: 42 img/s forward vs 29 img/s training,
# validation included; MiniLM top 2 layers on length-trimmed batches: about 2x).
STEP_COST = {"image": 1.5, "text": 2.0}
# What a fine-tune trains: images the top 2 blocks at 1e-4; text the whole transformer at 2e-5 (the usual
# BERT-family recipe; on SMS spam the top 2 layers at 5e-5 lost 1.5 points on validation in 3 epochs).
FINETUNE = {"image": {"learning_rate": 1e-4, "freeze": FreezePlan(mode="top_blocks", blocks=2)},
            "text": {"learning_rate": 2e-5, "freeze": FreezePlan(mode="none")}}
# Per preset: mirrored embeddings, fine-tune epochs, and the default fine-tune budget: so many passes
# over the data (a hand-written Keras recipe spends 10: five frozen and five fine-tune epochs), and
# never more than so many seconds unless train.time_budget_s says otherwise.
PRESETS = {"fast": {"flip": False, "epochs": 0, "budget_passes": 0.0, "budget_cap_s": 0.0},
           "balanced": {"flip": True, "epochs": 3, "budget_passes": 6.0, "budget_cap_s": 300.0},
           "best": {"flip": True, "epochs": 6, "budget_passes": 15.0, "budget_cap_s": 1800.0}}
IMBALANCED = 1.5  # largest/smallest class ratio from which class weights are worth a CV candidate
SATURATED = 0.99  # a CV score at or above this leaves nothing for a fine-tune to find
# A head with hidden layers trains by Adam on the cached embeddings until validation loss stalls.
HIDDEN_HEAD = Phase(name="head", epochs=200, learning_rate=1e-3, early_stopping=EarlyStopping(patience=10))
# A short fine-tune is expected to remove about this share of the head's remaining error (a prior, and a
# generous one: in benchmarks/recipe.py the kept fine-tunes gained 0.5-1.1 points on validation and then
# scored 0.6-1.0 below the head refit on all data on held-out images). It is only tried when the
# validation split can tell such a gain from noise, and only kept when it does.
GAIN_SHARE = 1 / 3
PROOF_SE = 2.0  # "tell from noise": a gain of at least this many standard errors of the validation score


def finetune_epochs(preset: dict[str, Any]) -> int:
    """The preset's fine-tune epochs (a forced fine-tune under ``fast`` takes balanced's)."""
    return preset["epochs"] or PRESETS["balanced"]["epochs"]


def standard_error(score: float, n: int) -> float:
    """Standard error of an accuracy ``score`` measured on ``n`` examples."""
    return math.sqrt(max(score * (1 - score), 1e-6) / max(n, 1))


@dataclass
class Decision:
    finetune: bool
    reason: str
    estimate_s: float
    budget_s: float


def decide_finetune(run: Run, cv_score: float, preset: dict[str, Any]) -> Decision:
    """Fine-tune or not, and why: the ``auto`` policy, or the user's ``always``/``never``."""
    p, n_train, n_val = run.project, len(run.splits.train), len(run.splits.val)
    modality = "text" if p.task.type.is_text else "image"
    rate = agree(run.placement, run.embed_rate or 1.0)  # every worker of a multi-worker run decides alike
    epochs = finetune_epochs(preset)
    estimate = epochs * (n_train * STEP_COST[modality] + n_val) / rate
    budget = p.train.time_budget_s or min(preset["budget_passes"] * (n_train + n_val) / rate,
                                          preset["budget_cap_s"])
    if p.train.finetune == "never":
        return Decision(False, "fine-tune turned off (train.finetune: never)", estimate, budget)
    if p.train.finetune == "always":
        return Decision(True, "fine-tune forced (train.finetune: always)", estimate, budget)
    if preset["epochs"] == 0:
        return Decision(False, "preset 'fast' trains the head only", estimate, budget)
    if not n_val:
        return Decision(False, "no validation split to check a fine-tune against", estimate, budget)
    if cv_score >= SATURATED:
        return Decision(False, f"the head alone scores {cv_score:.3f} in cross-validation", estimate, budget)
    se = standard_error(cv_score, n_val)
    if GAIN_SHARE * (1 - cv_score) < PROOF_SE * se:
        return Decision(False, f"{n_val} validation examples could not tell a fine-tune's likely gain "
                               f"(~{GAIN_SHARE * (1 - cv_score):.1%}) from noise ({PROOF_SE:g} x {se:.1%} standard "
                               "error); all the data trains the head instead", estimate, budget)
    if estimate > budget:
        return Decision(False, f"a fine-tune would take about {estimate:.0f}s here, over the {budget:.0f}s "
                               "budget (train.time_budget_s)", estimate, budget)
    return Decision(True, f"about {estimate:.0f}s of fine-tuning fits the {budget:.0f}s budget and the head "
                          f"leaves {1 - cv_score:.1%} error", estimate, budget)


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
        return {f"{prefix}loss": float((err ** 2).mean()), f"{prefix}mae": float(np.abs(err).mean())}
    if task.is_multi_label:
        loss = -(y * np.log(outputs + eps) + (1 - y) * np.log(1 - outputs + eps)).mean()
        return {f"{prefix}loss": float(loss), f"{prefix}accuracy": float(((outputs >= 0.5) == (y >= 0.5)).mean())}
    yi = y.astype(int).ravel()
    loss = -np.log(outputs[np.arange(len(yi)), yi] + eps).mean()
    return {f"{prefix}loss": float(loss), f"{prefix}{metric_name(task)}": float((outputs.argmax(1) == yi).mean())}


def _record_head(run: Run, logs: dict[str, float], note: str) -> None:
    phase = Phase(name="head", epochs=1)
    run.log.emit(PHASE_START, index=0, name="head", epochs=1, start_epoch=0, trainable_params=0,
                 non_trainable_params=0, embedding_cache=True, blocks=[], learning_rate=0.0, solver=note)
    run.log.emit(EPOCH_END, phase=0, phase_name="head", epoch=1, epochs=1, metrics=logs, seconds=0.0,
                 images_per_s=0.0, eta_s=0.0)
    run.epoch_done(0, phase, 0, logs, None)
    run.log.emit(PHASE_END, index=0, name="head")


@dataclass
class Choice:
    cv: CVResult
    mirror: bool
    weights: Optional[np.ndarray]  # per-example class weights, or None


def _cv(run: Run, x: np.ndarray, y: np.ndarray, xf: Optional[np.ndarray], units: int) -> Choice:
    """Cross-validate every candidate (mirrored copies or not, class weights or not) and keep the best.

    Each candidate is only an option: it is used when it scores better out of fold on this data.
    """
    task, seed = run.project.task.type, run.project.train.seed
    folds = choose_folds(y, task)
    w = _sample_weights(run, y)
    best: Optional[Choice] = None
    for weights in ([None, w] if w is not None else [None]):
        for mirror in ([False, True] if xf is not None else [False]):
            extra = {"extra_x": xf, "extra_of": np.arange(len(x))} if mirror else {}
            cv = cross_validate(x, y, task, units, weights, folds=folds, seed=seed, **extra)
            if best is None or (cv.score, -cv.loss) > (best.cv.score, -best.cv.loss):
                best = Choice(cv, mirror, weights)
    assert best is not None
    return best


def _fit(run: Run, x: np.ndarray, y: np.ndarray, xf: Optional[np.ndarray], idx: np.ndarray, l2: float,
         units: int, w: Optional[np.ndarray]) -> LinearHead:
    """Fit on the rows ``idx`` (plus their mirror copies when ``xf`` is given)."""
    xs, ys, ws = x[idx], y[idx], None if w is None else w[idx]
    if xf is not None:
        xs, ys = np.vstack([xs, xf[idx]]), np.concatenate([ys, ys])
        ws = None if ws is None else np.concatenate([ws, ws])
    return fit_linear_head(xs, ys, run.project.task.type, units, l2, ws)


def run_recipe(run: Run) -> None:
    """Train ``run``'s model with its preset; leaves the weights to export in ``run.model``."""
    p, task = run.project, run.project.task.type
    preset = PRESETS[p.train.preset]
    examples = run.splits.train + run.splits.val
    units = int(run.model.head.output.shape[-1])
    # float32 as computed: a float64 copy of 50,000 x 1280 embeddings (and their mirrors) was 1 GB of peak RSS.
    x = run.embeddings(examples)
    flip_ok = preset["flip"] and not task.is_text and p.train.mirror == "auto"
    xf = run.embeddings(examples, flip=True) if flip_ok else None
    y = run.encoder.encode_all(examples)
    choice = _cv(run, x, y, xf, units)
    cv, use_flip, w = choice.cv, choice.mirror, choice.weights
    run.use_class_weights = w is not None
    xf = xf if use_flip else None
    decision = decide_finetune(run, cv.score, preset) if not p.head.hidden else Decision(
        False, "a head with hidden layers trains by Adam on the cached embeddings, stopped on validation loss "
               "(the exact solver needs a linear head)", 0.0, 0.0)
    run.recipe = {"preset": p.train.preset, "cv": {"score": cv.score, "loss": cv.loss, "folds": cv.folds,
                                                   "l2": cv.l2, "grid": cv.grid, "n": len(examples)},
                  "mirror_augmentation": use_flip, "class_weights": w is not None,
                  "finetune": asdict(decision)}
    helped = (", mirrored copies helped" if use_flip else "") + (", class weights helped" if w is not None else "")
    run.recipe["summary"] = (f"head: L2 {cv.l2:g} by {cv.folds}-fold CV (score {cv.score:.3f}{helped}); "
                             f"{'fine-tune' if decision.finetune else 'no fine-tune'}: {decision.reason}")
    run.log.emit(RECIPE_DECISION, **run.recipe)
    if p.head.hidden:  # not a convex problem any more
        run.run_phase(0, HIDDEN_HEAD, 0, False)
        run.keep_best()
    elif decision.finetune:
        _head_then_finetune(run, x, y, xf, cv, units, w, preset)
    else:
        _refit_on_all(run, x, y, xf, cv, units, w, examples)


def _refit_on_all(run: Run, x: np.ndarray, y: np.ndarray, xf: Optional[np.ndarray], cv: CVResult, units: int,
                  w: Optional[np.ndarray], examples: list[Any], record: bool = True) -> None:
    task = run.project.task.type
    refit = run.project.train.refit != "never"
    idx = np.arange(len(x)) if refit else np.arange(len(run.splits.train))
    head = _fit(run, x, y, xf, idx, cv.l2, units, w)
    _set_head(run, head)
    if record:
        logs = {**_logs(run, predict(head, x[idx], task), y[idx]), **_logs(run, cv.oof, y, "val_")}
        _record_head(run, logs, f"L-BFGS to convergence, refit on {len(idx)} examples")
    run.recipe["refit"] = refit
    # Honest evaluation without a held-out pass: every example scored by a head that never saw it.
    run.evaluation = {**report_from_outputs(cv.oof, examples, run.encoder), "method": "cross-validation",
                      "note": f"out-of-fold predictions of {cv.folds}-fold cross-validation on {len(x)} examples"}


def _head_then_finetune(run: Run, x: np.ndarray, y: np.ndarray, xf: Optional[np.ndarray], cv: CVResult,
                        units: int, w: Optional[np.ndarray], preset: dict[str, Any]) -> None:
    task = run.project.task.type
    n_train = len(run.splits.train)
    head = _fit(run, x, y, xf, np.arange(n_train), cv.l2, units, w)
    _set_head(run, head)
    logs = {**_logs(run, predict(head, x[:n_train], task), y[:n_train]),
            **_logs(run, predict(head, x[n_train:], task), y[n_train:], "val_")}
    _record_head(run, logs, f"L-BFGS to convergence on {n_train} training examples")
    modality = "text" if task.is_text else "image"
    ft = FINETUNE[modality]
    epochs = finetune_epochs(preset)
    phase = Phase(name="finetune", epochs=epochs, learning_rate=ft["learning_rate"], schedule="cosine",
                  freeze=ft["freeze"],
                  augment=Augment(flip=xf is not None), use_embedding_cache=False,
                  early_stopping=EarlyStopping(metric="val_loss", patience=1))
    head_best, head_weights = dict(run.best), run.model.model.get_weights()
    head_val = float(head_best.get("value", 0.0))
    run.run_phase(1, phase, 0, False)
    gain = float(run.best.get("value", 0.0)) - head_val if run.best.get("phase_name") == "finetune" else 0.0
    kept = gain >= PROOF_SE * standard_error(head_val, len(run.splits.val))
    if kept:
        run.keep_best()
    else:  # back to the head on the original backbone; refit below
        run.model.model.set_weights(head_weights)
        run.best = {**head_best, "restored": True}
        run.best_weights = head_weights
        run.save_best_weights()
    run.recipe["finetune_kept"] = kept
    run.recipe["finetune_gain"] = gain
    if not kept:
        # The attempt cost time, not accuracy: back to the head, now refit on all the data.
        run.recipe["summary"] += (f"; the fine-tune's validation gain ({gain:+.3f}) was within noise, so the "
                                  "head was refit on all the data")
        _refit_on_all(run, x, y, xf, cv, units, w, run.splits.train + run.splits.val, record=False)
