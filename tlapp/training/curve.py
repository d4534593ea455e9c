"""A learning curve on the run's own embeddings, and what it forecasts for more data.

Why this is cheap: the head is a convex fit on cached embeddings, so refitting
it on nested subsets costs milliseconds each. Protocol, per seed: hold out one
stratified fold, draw nested class-stratified subsets of the rest (10 % ... 100 %),
fit the head with the run's own cross-validated L2, and score the held-out fold.
The error per subset is fit in log space, the larger subsets weighted more, with
two laws (n: training examples per class): a plain power law ``error = a * n**-b``
gives the forecast, and a saturating one, ``a * n**-b + c``, the pessimistic edge
of the band and the level the curve may settle at. Measured by
``benchmarks/curve.py`` (fit on at most half the pool, forecast the full pool) on
the offline sets, the saturating law under-forecast on 5 of 7 sets (by up to 10
points on 20 sign-language photos per class) and the plain one came closer;
the few-shot literature warns the plain law can over-promise, which is what the
saturating edge of the band is for. The band is the 10th percentile of the
saturating fits to the 90th of the plain ones over a bootstrap of seeds and of
held-out examples (each resample refit), so it carries the subsets' sampling
noise and the choice of law, not only the scoring noise.

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
BOOTSTRAP = 100  # resamples for the band: 200 moved no band edge by more than 0.005 on the benchmark sets
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


def fit_power_law(n: np.ndarray, err: np.ndarray, floor: float, saturating: bool = True) -> PowerLaw:
    """Fit in log space, weighting each point by its size (larger subsets are less noisy and nearer the
    forecast); ``floor`` keeps a zero error finite (half an example of the scored set). ``saturating=False``
    fixes the asymptote c at 0."""
    n, e = np.asarray(n, float), np.maximum(np.asarray(err, float), floor)
    w = np.sqrt(n / n.max())
    c_max = float(e.min()) * 0.999 if saturating else 1e-12

    def resid(p: np.ndarray) -> np.ndarray:
        la, b, c = p
        return w * (np.log(e) - np.log(np.exp(la) * n**-b + c))

    b0 = 0.5
    start = np.array([np.log(max(e[0] - 0.5 * c_max, floor) * n[0] ** b0), b0, 0.5 * c_max])
    res = least_squares(resid, start, bounds=([-20.0, 0.05, 0.0], [20.0, 2.0, max(c_max, 1e-12)]))
    la, b, c = res.x
    c = float(c) if saturating else 0.0
    return PowerLaw(float(np.exp(la)), float(b), c, float(np.sqrt(np.mean((res.fun / w) ** 2))))


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


def _errors(runs: list[dict[str, Any]]) -> np.ndarray:
    """Mean error per fraction over seeds."""
    return np.mean([r["wrong"].mean(1) for r in runs], axis=0)


def _resampled(runs: list[dict[str, Any]], rng: np.random.Generator) -> np.ndarray:
    """The mean error per fraction of a bootstrap sample: seeds drawn with replacement, and each drawn
    seed's held-out examples too."""
    picks = rng.integers(0, len(runs), len(runs))
    return np.mean(
        [
            runs[i]["wrong"][:, rng.integers(0, runs[i]["wrong"].shape[1], runs[i]["wrong"].shape[1])].mean(1)
            for i in picks
        ],
        axis=0,
    )


def analyse(raw: dict[str, Any], n_now: float, **kw: Any) -> dict[str, Any]:
    """Fit the curve, forecast at 2x/5x/10x the data with a band, and name the classes that gain most.

    ``n_now``: the run's training examples per class (the final head trains on all of them); ``target``:
    an accuracy to reach; ``names``: the class names. Hundreds of tiny fits: one BLAS thread for all of them
    (entering threadpoolctl's limit per fit cost more than the fit).
    """
    with threadpool_limits(1):
        return _analyse(raw, n_now, **kw)


def _analyse(
    raw: dict[str, Any],
    n_now: float,
    target: Optional[float] = None,
    names: Optional[list[str]] = None,
    seed: int = 0,
) -> dict[str, Any]:
    if not raw.get("available"):
        return {"available": False, "reason": raw.get("reason", "no curve")}
    runs = raw["runs"]
    n = np.mean([r["per_class"] for r in runs], axis=0)
    scored = sum(len(r["held_out"]) for r in runs)
    floor = 0.5 / scored
    err = _errors(runs)
    law, sat = fit_power_law(n, err, floor, saturating=False), fit_power_law(n, err, floor)
    rng = np.random.default_rng(seed)
    boots, sat_boots = [], []
    for _ in range(BOOTSTRAP):
        e = _resampled(runs, rng)
        boots.append(fit_power_law(n, e, floor, saturating=False))
        sat_boots.append(fit_power_law(n, e, floor))
    forecast = []
    for m in (1, *MULTIPLES):
        size = n_now * m
        lo = np.percentile([1 - b.error(size) for b in sat_boots], BAND[0])
        hi = np.percentile([1 - b.error(size) for b in boots], BAND[1])
        point = float(1 - law.error(size))
        forecast.append(
            {
                "multiple": m,
                "per_class": float(size),
                "accuracy": point,
                "low": float(min(lo, point)),
                "high": float(max(hi, point)),
            }
        )
    out: dict[str, Any] = {
        "available": True,
        "points": [
            {"per_class": float(a), "accuracy": float(1 - e), "seeds": [float(1 - r["wrong"][i].mean()) for r in runs]}
            for i, (a, e) in enumerate(zip(n, err))
        ],
        "law": {"a": law.a, "b": law.b, "c": law.c, "residual": law.residual},
        "saturating": {"a": sat.a, "b": sat.b, "c": sat.c, "residual": sat.residual},
        "ceiling": 1 - sat.c,  # where the saturating fit levels off: the pessimistic view
        "n_now": float(n_now),
        "forecast": forecast,
        "classes": _per_class(raw, n, n_now, floor, names),
        "seeds": len(runs),
        "held_out_scored": scored,
    }
    if target is not None:
        out["target"] = _target(law, sat, target, n_now)
    out["sentence"] = sentence(out)
    return out


PRACTICAL = 100  # a target that needs more than this many times today's data is out of reach in practice


def _target(law: PowerLaw, sat: PowerLaw, target: float, n_now: float) -> dict[str, Any]:
    need = law.needed(1 - target)
    practical = need is not None and need <= PRACTICAL * n_now
    return {
        "accuracy": target,
        "per_class": need if practical else None,
        "more_per_class": max(0.0, need - n_now) if practical and need is not None else None,
        "pessimistic_per_class": sat.needed(1 - target),  # None: the saturating fit levels off below it
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
        law = fit_power_law(n, err, floor, saturating=False)
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
                f"Accuracy {t['accuracy']:.2f} looks out of reach with this backbone: the curve would need more "
                f"than {PRACTICAL} times today's {noun} (and may level off near {curve['ceiling']:.2f}); "
                "try a stronger backbone or a fine-tune."
            )
        if t["more_per_class"] == 0:
            return f"Accuracy ~{now['accuracy']:.2f} already meets the target of {t['accuracy']:.2f}."
        return (
            f"About {t['more_per_class']:,.0f} more {noun} per class would bring accuracy from "
            f"~{now['accuracy']:.2f} to {t['accuracy']:.2f} (the curve's best fit)."
        )
    last = curve["points"][-1]
    if last["accuracy"] >= 1.0:  # nothing left to gain that the held-out examples could show
        return (
            f"The head already gets every held-out example right with {last['per_class']:.0f} {noun} per class "
            f"({curve['held_out_scored']} checked); more {noun} of the same kind cannot show a gain here."
        )
    more = f["per_class"] - curve["n_now"]
    gain = f["accuracy"] - now["accuracy"]
    if gain < 0.005:
        return (
            f"More {noun} of the same kind would barely help: accuracy ~{now['accuracy']:.2f} now, "
            f"~{f['accuracy']:.2f} with twice as many."
        )
    return (
        f"About {more:,.0f} more {noun} per class would bring accuracy from ~{now['accuracy']:.2f} (the final "
        f"model, trained on all {curve['n_now']:,.0f} per class) to ~{f['accuracy']:.2f} ({f['low']:.2f}-{f['high']:.2f})."
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
