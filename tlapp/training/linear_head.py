"""A linear head fitted to convergence on cached embeddings, its L2 strength chosen by k-fold CV.

On frozen features the head is a convex problem: full-batch L-BFGS reaches the
optimum in well under a second, where epochs of Adam stop wherever the epoch
count says. Features are centred and divided by one global scale inside the fit
(so one L2 grid fits every backbone), and that is folded back into the Dense
kernel, so the exported model is unchanged in shape. One scale, not one per
dimension: per-dimension standardisation amplifies near-silent dimensions, and
on sign-language digits (Lite0 embeddings, held-out images) it scored 0.758 /
0.838 / 0.888 at 10 / 30 / 50 images per class against 0.808 / 0.872 / 0.898.

Cross-validation never trains on the fold it scores; augmented embeddings (a
flipped copy of an image) join only the training folds of their own example,
so the estimate stays honest. The out-of-fold predictions double as an honest
evaluation of every example when the final head is refit on all the data.

BLAS runs single-threaded here: these matrices are small, and a multi-threaded
OpenBLAS spinning against TensorFlow's threads made each fit 50x slower (measured).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Optional

import numpy as np
from scipy.optimize import minimize
from threadpoolctl import threadpool_limits

from tlapp.base.errors import Cancelled
from tlapp.config import TaskType

# Called after each solver iteration with (iteration, data loss, training score): the live curve of a head solve.
OnIter = Callable[[int, float, float], None]
StopCheck = Optional[Callable[[], bool]]

L2_GRID = (3e-4, 1e-3, 3e-3, 1e-2, 3e-2, 1e-1, 3e-1)  # per-example penalty on scaled features
MAX_ITER = 500
FTOL = 1e-7  # relative change of the loss; tighter moved no CV choice in tests, and cost 2x the time


@dataclass
class LinearHead:
    """Dense weights in the original feature space: ``outputs = act(x @ kernel + bias)``."""

    kernel: np.ndarray
    bias: np.ndarray
    theta: Optional[np.ndarray] = None  # the solver's solution (scaled space), to warm-start a neighbour
    iterations: int = 0  # solver iterations it took (0: closed form)


@dataclass
class CVResult:
    l2: float
    score: float  # mean out-of-fold accuracy (classification) or R^2 (regression)
    loss: float  # mean out-of-fold loss
    folds: int
    oof: np.ndarray  # out-of-fold outputs, one row per example
    grid: list[dict[str, float]] = field(default_factory=list)
    averaged: bool = False  # the score is of outputs averaged with the mirror image's (see ``cross_validate``)
    repeats: int = 1  # k-fold draws the scores are the mean of


def ranking(score: float, loss: float) -> tuple[float, float]:
    """Which of two cross-validated heads is better (smaller first): the higher score, then the lower
    loss. The leaderboard ranks by it and ``backbone.choose_from`` picks by it, so they agree."""
    return (-score, loss)


def _kind(task: TaskType) -> str:
    if task == TaskType.regression:
        return "regression"
    return "sigmoid" if task.is_multi_label else "softmax"


def _targets(y: np.ndarray, kind: str, units: int) -> np.ndarray:
    if kind == "softmax":
        return np.eye(units)[y.astype(int).ravel()]
    return y.reshape(len(y), -1).astype(np.float64)


def _outputs(z: np.ndarray, kind: str) -> np.ndarray:
    if kind == "softmax":
        z = z - z.max(1, keepdims=True)
        e = np.exp(z)
        return e / e.sum(1, keepdims=True)
    if kind == "sigmoid":
        return 1.0 / (1.0 + np.exp(-z))
    return z


def _loss(p: np.ndarray, t: np.ndarray, kind: str, w: np.ndarray) -> float:
    eps = 1e-12
    if kind == "softmax":
        per = -(t * np.log(p + eps)).sum(1)
    elif kind == "sigmoid":
        per = -(t * np.log(p + eps) + (1 - t) * np.log(1 - p + eps)).mean(1)
    else:
        per = ((p - t) ** 2).mean(1)
    return float((per * w).sum() / w.sum())


def _accuracy(p: np.ndarray, t: np.ndarray, kind: str) -> float:
    if kind == "softmax":
        return float((p.argmax(1) == t.argmax(1)).mean())
    return float(((p >= 0.5) == (t >= 0.5)).mean())


def _fit_scaled(
    xs: np.ndarray,
    t: np.ndarray,
    kind: str,
    l2: float,
    w: np.ndarray,
    start: Optional[np.ndarray],
    on_iter: Optional[OnIter] = None,
    should_stop: StopCheck = None,
) -> tuple[np.ndarray, int]:
    """Minimise weighted mean loss + l2/2 |W|^2 by L-BFGS; returns the flat [W; b] vector and its iterations."""
    n, d = xs.shape
    k = t.shape[1]
    ww = (w / w.sum())[:, None]
    if kind == "regression":  # ridge: closed form
        xb = np.hstack([xs, np.ones((n, 1))])
        reg = l2 * np.eye(d + 1)
        reg[-1, -1] = 0.0
        return np.linalg.solve(xb.T @ (xb * ww) + reg, xb.T @ (t * ww)).ravel(), 0
    last: dict[str, float] = {}

    def f(theta: np.ndarray) -> tuple[float, np.ndarray]:
        wmat, b = theta[: d * k].reshape(d, k), theta[d * k :]
        # The (n, d) products run in the features' own dtype: mixing float32 features with float64
        # weights made numpy copy the whole matrix to float64 twice per step (341 MB at 45k x 1280).
        p = _outputs((xs @ wmat.astype(xs.dtype)).astype(np.float64) + b, kind)
        g = (p - t) * ww / (k if kind == "sigmoid" else 1)
        data_loss = _loss(p, t, kind, w)
        if on_iter is not None:  # L-BFGS-B accepts the point it evaluated last, so this is the iterate's
            last.update(loss=data_loss, score=_accuracy(p, t, kind))
        value = data_loss + 0.5 * l2 * float((wmat**2).sum())
        grad_w = (xs.T @ g.astype(xs.dtype)).astype(np.float64) + l2 * wmat
        return value, np.concatenate([grad_w.ravel(), g.sum(0)])

    iters = [0]

    def step(_xk: np.ndarray) -> None:
        iters[0] += 1
        if should_stop is not None and should_stop():
            raise Cancelled(f"cancelled while solving the head (iteration {iters[0]})")
        if on_iter is not None:
            on_iter(iters[0], last["loss"], last["score"])

    x0 = start if start is not None else np.zeros(d * k + k)
    with threadpool_limits(1):
        res = minimize(f, x0, jac=True, method="L-BFGS-B", callback=step, options={"maxiter": MAX_ITER, "ftol": FTOL})
    return res.x, int(res.nit)


def fit_linear_head(
    x: np.ndarray,
    y: np.ndarray,
    task: TaskType,
    units: int,
    l2: float,
    sample_weight: Optional[np.ndarray] = None,
    start: Optional[np.ndarray] = None,
    on_iter: Optional[OnIter] = None,
    should_stop: StopCheck = None,
) -> LinearHead:
    """Fit on ``x`` (n, d) and fold the centring and scaling into the returned Dense weights.

    ``on_iter(iteration, loss, score)`` follows the solver live; ``should_stop()`` cancels it.
    """
    kind = _kind(task)
    mu, sd = x.mean(0), np.full(x.shape[1], x.std() + 1e-6)
    w = np.ones(len(x)) if sample_weight is None else sample_weight
    theta, iters = _fit_scaled((x - mu) / sd, _targets(y, kind, units), kind, l2, w, start, on_iter, should_stop)
    d = x.shape[1]
    wmat, b = theta[: d * units].reshape(d, units), theta[d * units :]
    kernel = wmat / sd[:, None]
    return LinearHead(kernel.astype(np.float32), (b - mu @ kernel).astype(np.float32), theta, iters)


def predict(head: LinearHead, x: np.ndarray, task: TaskType) -> np.ndarray:
    return _outputs(x @ head.kernel + head.bias, _kind(task))


def score(p: np.ndarray, y: np.ndarray, task: TaskType) -> float:
    """Accuracy for classification (per-label for multi-label), R^2 for regression."""
    kind = _kind(task)
    if kind == "softmax":
        return float((p.argmax(1) == y.astype(int).ravel()).mean())
    if kind == "sigmoid":
        return float(((p >= 0.5) == (y >= 0.5)).mean())
    t = y.reshape(len(y), -1)
    return float(1 - ((p - t) ** 2).sum() / max(((t - t.mean(0)) ** 2).sum(), 1e-12))


def fold_ids(y: np.ndarray, task: TaskType, folds: int, seed: int) -> np.ndarray:
    """Stratified fold number per example (by class; round-robin inside each class)."""
    rng = np.random.default_rng(seed)
    strata = y.astype(int).ravel() if task.is_single_label else np.zeros(len(y), int)
    out = np.zeros(len(y), int)
    for s in np.unique(strata):
        idx = rng.permutation(np.where(strata == s)[0])
        out[idx] = (np.arange(len(idx)) + rng.integers(folds)) % folds
    return out


def cross_validate(
    x: np.ndarray,
    y: np.ndarray,
    task: TaskType,
    units: int,
    sample_weight: Optional[np.ndarray] = None,
    extra_x: Optional[np.ndarray] = None,
    extra_of: Optional[np.ndarray] = None,
    folds: int = 5,
    seed: int = 0,
    grid: tuple[float, ...] = L2_GRID,
    on_candidate: Optional[Callable[[dict[str, float]], None]] = None,
    should_stop: StopCheck = None,
    mirrored: Optional[np.ndarray] = None,
    repeats: int = 1,
) -> CVResult:
    """Choose the L2 strength by k-fold CV (best score, ties to the lower loss).

    ``extra_x`` rows are augmented copies of examples ``extra_of`` (indices into ``x``):
    they train with their example's fold, never score. ``mirrored`` (the mirror image of every
    example, row for row) also scores each fold's head on the mean of its outputs for an example and
    for its mirror image, as a model that averages the two would predict; the better of the two ways
    wins (``averaged``). ``repeats``: the k-fold CV run that many times over different fold draws,
    scores averaged (see :func:`cv_repeats`); the out-of-fold outputs are averaged too, so each is
    still from heads that never saw the example. ``on_candidate(row)`` hears each L2 value's
    out-of-fold score as it finishes; ``should_stop()`` cancels between fits.
    """
    kind = _kind(task)
    w = np.ones(len(x)) if sample_weight is None else sample_weight
    fids = [fold_ids(y, task, folds, seed + r) for r in range(repeats)]
    rows: list[dict[str, float]] = []
    best: Optional[tuple[tuple[float, float], float, np.ndarray, bool]] = None
    starts: dict[tuple[int, int], Optional[np.ndarray]] = {}
    iters = 0
    t = _targets(y, kind, units)
    for l2 in sorted(grid, reverse=True):  # strong to weak: each fold warm-starts from its previous solution
        ways: dict[bool, list[np.ndarray]] = {False: [], True: []}
        for r, fid in enumerate(fids):
            oof = np.zeros((len(x), units))
            oof_avg = np.zeros((len(x), units))
            for f in range(folds):
                tr, va = fid != f, fid == f
                xt, yt, wt = x[tr], y[tr], w[tr]
                if extra_x is not None and extra_of is not None:
                    keep = tr[extra_of]
                    xt = np.vstack([xt, extra_x[keep]])
                    yt = np.concatenate([yt, y[extra_of[keep]]])
                    wt = np.concatenate([wt, w[extra_of[keep]]])
                if should_stop is not None and should_stop():
                    raise Cancelled(f"cancelled while cross-validating the head (L2 {l2:g}, fold {f + 1} of {folds})")
                head = fit_linear_head(xt, yt, task, units, l2, wt, starts.get((r, f)), should_stop=should_stop)
                starts[r, f] = head.theta
                iters += head.iterations
                oof[va] = predict(head, x[va], task)
                if mirrored is not None:
                    oof_avg[va] = (oof[va] + predict(head, mirrored[va], task)) / 2
            ways[False].append(oof)
            if mirrored is not None:
                ways[True].append(oof_avg)
        row: dict[str, float] = {"l2": l2}
        for averaged, outs in ways.items():
            if not outs:
                continue
            s = float(np.mean([score(o, y, task) for o in outs]))
            loss = float(np.mean([_loss(o, t, kind, w) for o in outs]))
            row.update({"score_averaged": s, "loss_averaged": loss} if averaged else {"score": s, "loss": loss})
            if best is None or (s, -loss) > best[0]:
                best = ((s, -loss), l2, np.mean(outs, axis=0), averaged)
        row["iterations"] = iters / (folds * repeats)
        if kind == "regression":
            row["mae"] = float(np.mean([np.abs(o - y.reshape(len(y), -1)).mean() for o in ways[False]]))
        rows.append(row)
        iters = 0
        if on_candidate is not None:
            on_candidate(row)
    assert best is not None
    (s, neg_loss), l2, oof, averaged = best
    return CVResult(l2, s, -neg_loss, folds, oof, rows, averaged, repeats)


def cv_repeats(n: int, scored: int = 600, most: int = 5) -> int:
    """How many times to repeat a k-fold CV of ``n`` examples: until about ``scored`` out-of-fold predictions
    judge each candidate. On 100 sign-language photos one 5-fold draw put the same head anywhere from 0.68
    to 0.74 depending on the folds alone, more than the 2-4 points that mirrored copies or averaging with the
    mirror image are worth. The price is the head's fits: on those 100 photos the head's stage (CV, insights,
    solve) took 15.6 s of a 39 s run in the recipe benchmark, against 4.4 s with one draw."""
    return max(1, min(most, -(-scored // max(n, 1))))


def choose_folds(y: np.ndarray, task: TaskType, most: Optional[int] = None) -> int:
    """As many folds as the smallest class allows (at least 2, at most ``most``: 5, or 3 from 500
    examples on, where a third of the data already scores each candidate on hundreds of examples)."""
    most = most or (5 if len(y) < 500 else 3)
    if not task.is_single_label:
        return most if len(y) >= 2 * most else 2
    smallest = int(np.bincount(y.astype(int).ravel()).min()) if len(y) else 0
    return max(2, min(most, smallest))
