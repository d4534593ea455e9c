"""A learning curve on the run's own embeddings, and what it forecasts for more data.

Why this is cheap: the head is a convex fit on cached embeddings, so refitting
it on nested subsets costs milliseconds each. Protocol, per seed: hold out one
stratified fold, draw nested class-stratified subsets of the rest (10 % ... 100 %),
fit the head with the run's own cross-validated L2, and score the held-out fold.
The error per subset is then fit with a saturating power law
``error = a * n**-b + c`` (n: training examples per class). Few-shot curves are
not plain power laws (a plain one over-promises), so the fit has an asymptote
``c``, runs in log space and weights the larger subsets more. The band comes
from a bootstrap over the held-out examples (each resample refit).

The forecast is for the head on these frozen embeddings: a fine-tune that was
kept may do better, never worse in expectation.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Callable, Optional

import numpy as np
from scipy.optimize import least_squares
from threadpoolctl import threadpool_limits

from tlapp.base.errors import Cancelled
from tlapp.config import TaskType
from tlapp.training.linear_head import fit_linear_head, fold_ids, predict

FRACTIONS = (0.1, 0.2, 0.35, 0.5, 0.7, 1.0)
MULTIPLES = (2, 5, 10)
BOOTSTRAP = 200
BAND = (10, 90)  # percentiles of the bootstrap forecasts


@dataclass
class PowerLaw:
    """``error(n) = a * n**-b + c`` for n training examples per class."""

    a: float
    b: float
    c: float
    residual: float  # root-mean-square of the fit's log residuals

    def error(self, n: float | np.ndarray) -> Any:
        return self.a * np.power(np.asarray(n, float), -self.b) + self.c

    def needed(self, target_error: float) -> Optional[float]:
        """Examples per class that bring the error to ``target_error``; None when the asymptote is above it."""
        if target_error <= self.c:
            return None
        return float((self.a / (target_error - self.c)) ** (1.0 / self.b))


def fit_power_law(n: np.ndarray, err: np.ndarray, floor: float) -> PowerLaw:
    """Fit in log space, weighting each point by its size (larger subsets are less noisy and nearer the
    forecast); ``floor`` keeps a zero error finite (half an example of the scored set)."""
    n, e = np.asarray(n, float), np.maximum(np.asarray(err, float), floor)
    w = np.sqrt(n / n.max())
    c_max = float(e.min()) * 0.999

    def resid(p: np.ndarray) -> np.ndarray:
        la, b, c = p
        return w * (np.log(e) - np.log(np.exp(la) * n**-b + c))

    b0 = 0.5
    start = np.array([np.log(max(e[0] - 0.5 * c_max, floor) * n[0] ** b0), b0, 0.5 * c_max])
    with threadpool_limits(1):
        res = least_squares(resid, start, bounds=([-20.0, 0.05, 0.0], [20.0, 2.0, max(c_max, 1e-12)]))
    la, b, c = res.x
    return PowerLaw(float(np.exp(la)), float(b), float(c), float(np.sqrt(np.mean((res.fun / w) ** 2))))


def _subsets(pool: np.ndarray, y: np.ndarray, rng: np.random.Generator) -> list[np.ndarray]:
    """Nested, class-stratified subsets of ``pool`` (indices), one per fraction; at least one example a class."""
    order = {c: rng.permutation(pool[y[pool] == c]) for c in np.unique(y[pool])}
    return [np.concatenate([o[: max(1, int(round(f * len(o))))] for o in order.values()]) for f in FRACTIONS]


def measure(
    x: np.ndarray,
    y: np.ndarray,
    task: TaskType,
    units: int,
    l2: float,
    sample_weight: Optional[np.ndarray] = None,
    seeds: int = 3,
    budget_s: float = 10.0,
    should_stop: Optional[Callable[[], bool]] = None,
) -> dict[str, Any]:
    """The curve's raw points: per seed and fraction, which held-out examples the head got wrong.

    Seeds run until ``budget_s`` is spent (the first always completes), so a large set costs one seed.
    """
    if not task.is_single_label:
        return {"available": False, "reason": "learning curves are measured for single-label classification"}
    y = y.astype(int).ravel()
    folds = max(3, min(5, int(np.bincount(y).min())))
    w = np.ones(len(y)) if sample_weight is None else sample_weight
    t0, runs = time.time(), []
    for s in range(min(seeds, folds)):
        if runs and time.time() - t0 > budget_s:
            break
        hold = fold_ids(y, task, folds, seed=1000 + s) == 0
        pool = np.where(~hold)[0]
        if len(np.unique(y[pool])) < units or not hold.any():
            break
        rng, start, wrong, sizes = np.random.default_rng(s), None, [], []
        for idx in _subsets(pool, y, rng):
            if should_stop is not None and should_stop():
                raise Cancelled("cancelled while measuring the learning curve")
            head = fit_linear_head(x[idx], y[idx], task, units, l2, w[idx], start)
            start = head.theta
            wrong.append(predict(head, x[hold], task).argmax(1) != y[hold])
            sizes.append(len(idx) / units)
        runs.append({"held_out": np.where(hold)[0], "wrong": np.array(wrong), "per_class": np.array(sizes)})
    if not runs:
        return {"available": False, "reason": "too few examples per class for a learning curve"}
    return {"available": True, "runs": runs, "y": y, "classes": units, "seconds": time.time() - t0}


def _errors(runs: list[dict[str, Any]], pick: Optional[list[np.ndarray]] = None) -> np.ndarray:
    """Mean error per fraction over seeds; ``pick`` resamples each seed's held-out examples."""
    per = [r["wrong"][:, p if pick is not None else slice(None)].mean(1) for r, p in zip(runs, pick or [None] * 9)]
    return np.mean(per, axis=0)


def analyse(
    raw: dict[str, Any],
    n_now: float,
    target: Optional[float] = None,
    names: Optional[list[str]] = None,
    seed: int = 0,
) -> dict[str, Any]:
    """Fit the curve, forecast at 2x/5x/10x the data with a band, and name the classes that gain most.

    ``n_now``: the run's training examples per class (the final head trains on all of them).
    """
    if not raw.get("available"):
        return {"available": False, "reason": raw.get("reason", "no curve")}
    runs = raw["runs"]
    n = np.mean([r["per_class"] for r in runs], axis=0)
    scored = sum(len(r["held_out"]) for r in runs)
    floor = 0.5 / scored
    err = _errors(runs)
    law = fit_power_law(n, err, floor)
    rng = np.random.default_rng(seed)
    boots = []
    for _ in range(BOOTSTRAP):
        pick = [rng.integers(0, len(r["held_out"]), len(r["held_out"])) for r in runs]
        boots.append(fit_power_law(n, _errors(runs, pick), floor))
    sizes = [n_now * m for m in (1, *MULTIPLES)]
    forecast = []
    for m, size in zip((1, *MULTIPLES), sizes):
        lo, hi = np.percentile([1 - b.error(size) for b in boots], BAND)
        forecast.append(
            {
                "multiple": m,
                "per_class": float(size),
                "accuracy": float(1 - law.error(size)),
                "low": float(lo),
                "high": float(hi),
            }
        )
    out: dict[str, Any] = {
        "available": True,
        "points": [
            {"per_class": float(a), "accuracy": float(1 - e), "seeds": [float(1 - r["wrong"][i].mean()) for r in runs]}
            for i, (a, e) in enumerate(zip(n, err))
        ],
        "law": {"a": law.a, "b": law.b, "c": law.c, "residual": law.residual},
        "ceiling": 1 - law.c,
        "n_now": float(n_now),
        "forecast": forecast,
        "classes": _per_class(raw, n, n_now, floor, names),
        "seeds": len(runs),
        "held_out_scored": scored,
    }
    if target is not None:
        out["target"] = _target(law, boots, target, n_now)
    out["sentence"] = sentence(out)
    return out


def _target(law: PowerLaw, boots: list[PowerLaw], target: float, n_now: float) -> dict[str, Any]:
    need = law.needed(1 - target)
    reachable = [b.needed(1 - target) for b in boots]
    share = float(np.mean([r is not None for r in reachable]))
    return {
        "accuracy": target,
        "per_class": need,
        "more_per_class": None if need is None else max(0.0, need - n_now),
        "reachable_share": share,  # the bootstrap fits that reach it at all
    }


def _per_class(
    raw: dict[str, Any], n: np.ndarray, n_now: float, floor: float, names: Optional[list[str]]
) -> list[dict[str, Any]]:
    """Each class's own error curve (its held-out examples), and what doubling the data would gain it."""
    y, rows = raw["y"], []
    for c in range(raw["classes"]):
        cols = [(r["wrong"][:, y[r["held_out"]] == c]) for r in raw["runs"]]
        if sum(col.shape[1] for col in cols) == 0:
            continue
        err = np.mean([col.mean(1) for col in cols if col.shape[1]], axis=0)
        law = fit_power_law(n, err, floor)
        now, double = float(law.error(n_now)), float(law.error(2 * n_now))
        name = names[c] if names else str(c)
        rows.append({"class": c, "name": name, "accuracy": 1 - now, "at_2x": 1 - double, "gain_2x": now - double})
    return sorted(rows, key=lambda r: -r["gain_2x"])


def sentence(curve: dict[str, Any], noun: str = "examples") -> str:
    """One sentence a person can act on."""
    if not curve.get("available"):
        return f"No learning curve: {curve.get('reason', 'not measured')}."
    now, f = curve["forecast"][0], curve["forecast"][1]
    t = curve.get("target")
    if t is not None:
        if t["per_class"] is None:
            return (
                f"Accuracy {t['accuracy']:.2f} looks out of reach with this backbone: its curve levels off "
                f"near {curve['ceiling']:.2f}; try a stronger backbone or a fine-tune."
            )
        if t["more_per_class"] == 0:
            return f"Accuracy ~{now['accuracy']:.2f} already meets the target of {t['accuracy']:.2f}."
        return (
            f"About {t['more_per_class']:,.0f} more {noun} per class would bring accuracy from "
            f"~{now['accuracy']:.2f} to {t['accuracy']:.2f} (the curve's best fit)."
        )
    more = f["per_class"] - curve["n_now"]
    gain = f["accuracy"] - now["accuracy"]
    if gain < 0.005:
        return (
            f"More {noun} of the same kind would barely help: accuracy ~{now['accuracy']:.2f} now, "
            f"~{f['accuracy']:.2f} with twice as many; the curve levels off near {curve['ceiling']:.2f}."
        )
    return (
        f"About {more:,.0f} more {noun} per class would bring accuracy from ~{now['accuracy']:.2f} "
        f"to ~{f['accuracy']:.2f} ({f['low']:.2f}-{f['high']:.2f})."
    )


def to_json(raw: dict[str, Any]) -> dict[str, Any]:
    """The raw points as JSON (a run stores them, so ``tlapp curve --target`` refits without the embeddings)."""
    if not raw.get("available"):
        return dict(raw)
    runs = [
        {
            "held_out": r["held_out"].tolist(),
            "wrong": r["wrong"].astype(int).tolist(),
            "per_class": r["per_class"].tolist(),
        }
        for r in raw["runs"]
    ]
    return {**{k: raw[k] for k in ("available", "classes", "seconds")}, "y": raw["y"].tolist(), "runs": runs}


def from_json(doc: dict[str, Any]) -> dict[str, Any]:
    if not doc.get("available"):
        return doc
    runs = [
        {
            "held_out": np.array(r["held_out"]),
            "wrong": np.array(r["wrong"], bool),
            "per_class": np.array(r["per_class"]),
        }
        for r in doc["runs"]
    ]
    return {**doc, "y": np.array(doc["y"]), "runs": runs}
