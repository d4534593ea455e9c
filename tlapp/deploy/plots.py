"""Evaluation plots as PNG files in the run folder (``plots/``), drawn with matplotlib.

The wizard draws its own live charts (pyqtgraph); these files are for the model card, the HTML
report and anyone reading a run folder without tlapp. Each plot is skipped, not faked, when its
report lacks the numbers (a regression run has no confusion matrix).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Optional

import numpy as np

from tlapp.base.fsutil import atomic_path
from tlapp.rundir import RunDir


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")  # files only: never a window, never a display
    import matplotlib.pyplot as plt

    return plt


def _save(fig: Any, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path, suffix=".png") as tmp:
        fig.savefig(tmp, dpi=110, bbox_inches="tight", format="png")
    _pyplot().close(fig)
    return path


def confusion(rep: dict[str, Any], title: str, path: Path) -> Optional[Path]:
    """Row-normalised confusion matrix, each cell also giving its count."""
    if "confusion_matrix" not in rep:
        return None
    plt = _pyplot()
    cm, classes = np.array(rep["confusion_matrix"]), rep["classes"]
    norm = cm / np.maximum(cm.sum(1, keepdims=True), 1)
    size = min(0.55 * len(classes) + 2.5, 14)
    fig, ax = plt.subplots(figsize=(size, size * 0.85))
    im = ax.imshow(norm, cmap="Blues", vmin=0, vmax=1)
    ax.set_xticks(range(len(classes)), classes, rotation=45, ha="right")
    ax.set_yticks(range(len(classes)), classes)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    if len(classes) <= 20:
        for i in range(len(classes)):
            for j in range(len(classes)):
                ax.text(
                    j,
                    i,
                    f"{cm[i, j]}",
                    ha="center",
                    va="center",
                    fontsize=8,
                    color="white" if norm[i, j] > 0.5 else "black",
                )
    fig.colorbar(im, ax=ax, fraction=0.046, label="share of the true class")
    ax.set_title(title)
    return _save(fig, path)


def reliability(rep: dict[str, Any], title: str, path: Path) -> Optional[Path]:
    """Accuracy per confidence bin against the diagonal of perfect calibration."""
    cal = rep.get("calibration")
    if not cal:
        return None
    plt = _pyplot()
    bins = [b for b in cal["bins"] if b["count"]]
    fig, ax = plt.subplots(figsize=(5, 4.5))
    ax.plot([0, 1], [0, 1], "--", color="grey", label="perfect calibration")
    ax.bar(
        [(b["low"] + b["high"]) / 2 for b in bins],
        [b["accuracy"] for b in bins],
        width=[b["high"] - b["low"] for b in bins],
        alpha=0.7,
        edgecolor="black",
        label="accuracy in bin",
    )
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.set_xlabel("confidence of the predicted class")
    ax.set_ylabel("accuracy")
    ax.set_title(f"{title} (ECE {cal['ece']:.3f})")
    ax.legend(loc="upper left")
    return _save(fig, path)


def residuals(rep: dict[str, Any], title: str, path: Path) -> Optional[Path]:
    """Predicted vs true values, and the residuals against the true value."""
    if "rmse" not in rep or not rep.get("predictions"):
        return None
    plt = _pyplot()
    t = np.array([p["true"] for p in rep["predictions"]], float)
    y = np.array([p["pred"] for p in rep["predictions"]], float)
    fig, (a, b) = plt.subplots(1, 2, figsize=(9, 4))
    lo, hi = float(min(t.min(), y.min())), float(max(t.max(), y.max()))
    a.scatter(t, y, s=10, alpha=0.6)
    a.plot([lo, hi], [lo, hi], "--", color="grey")
    a.set_xlabel("true")
    a.set_ylabel("predicted")
    a.set_title(f"{title}: R² {rep['r2']:.3f}" if rep.get("r2") is not None else title)
    b.scatter(t, y - t, s=10, alpha=0.6)
    b.axhline(0, color="grey", linestyle="--")
    b.set_xlabel("true")
    b.set_ylabel("residual (predicted - true)")
    b.set_title(f"MAE {rep['mae']:.3f}, RMSE {rep['rmse']:.3f}")
    return _save(fig, path)


def write_plots(run_dir: RunDir, reports: dict[str, Optional[dict[str, Any]]]) -> list[Path]:
    """Every plot each split's report supports, as ``plots/<split>_<kind>.png``."""
    out: list[Path] = []
    names = {"val": "validation", "test": "test"}
    for split, rep in reports.items():
        if not rep:
            continue
        for kind, fn in (("confusion", confusion), ("reliability", reliability), ("residuals", residuals)):
            made = fn(rep, f"{names.get(split, split)} {kind}", run_dir.plots / f"{split}_{kind}.png")
            if made:
                out.append(made)
    return out


def learning_curve(analysis: dict[str, Any], path: Path) -> Optional[Path]:
    """Measured accuracy per subset (each seed a dot), the fitted curve, and the forecast with its band."""
    if not analysis.get("available"):
        return None
    plt = _pyplot()
    law, pts, fc = analysis["law"], analysis["points"], analysis["forecast"]
    fig, ax = plt.subplots(figsize=(6.4, 4))
    for p in pts:
        ax.scatter([p["per_class"]] * len(p["seeds"]), p["seeds"], s=12, color="#9bb7d4")
    ax.plot([p["per_class"] for p in pts], [p["accuracy"] for p in pts], "o", color="#1f5fa0", label="measured")
    n = np.geomspace(min(p["per_class"] for p in pts), fc[-1]["per_class"], 100)
    ax.plot(n, 1 - law["a"] * n ** -law["b"], color="#1f5fa0", lw=1.5, label="fitted curve")
    ax.fill_between(
        [f["per_class"] for f in fc],
        [f["low"] for f in fc],
        [f["high"] for f in fc],
        color="#1f5fa0",
        alpha=0.15,
        label="forecast band (10-90 %)",
    )
    ax.axvline(analysis["n_now"], color="#888", ls="--", lw=1, label="this run")
    ax.set_xscale("log")
    ax.set_xlabel("training examples per class")
    ax.set_ylabel("accuracy (held out)")
    ax.set_title(analysis.get("sentence", ""), fontsize=8, wrap=True)
    ax.legend(fontsize=8, loc="lower right")
    return _save(fig, path)
