"""What a run learns about its data: the learning curve and the labels that look wrong.

Both come from what the exact head already has in hand: the embeddings of
every example, its cross-validated L2 and out-of-fold probabilities (a head
that never saw the example). So they cost a few dozen head fits, not another
pass over the images, and they are written beside the run (``curve.json``,
``label_issues.json``) for ``tlapp curve``, ``tlapp label-issues``, the
wizard and the model card to read.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Callable, Optional

import numpy as np

from tlapp.base.errors import TlappError
from tlapp.base.fsutil import atomic_write_text
from tlapp.config import TaskType
from tlapp.data.corrections import data_root, key_of
from tlapp.data.examples import Example
from tlapp.data.label_issues import duplicate_conflicts, find_issues
from tlapp.rundir import RunDir
from tlapp.training import curve

CURVE_BUDGET_S = 3.0  # measured: 5-9 s a run at 8 s (SMS 1,000 texts, 500-900 photos); the curve is an aside
CURVE_MAX = 10_000  # examples the curve refits on; a larger run's curve is measured on a random sample of that many
MAX_DOUBTFUL = 500  # seeds stop once this is spent (the first always completes)


def write_curve(
    rd: RunDir,
    x: np.ndarray,
    y: np.ndarray,
    task: TaskType,
    units: int,
    l2: float,
    sample_weight: Optional[np.ndarray],
    noun: str,
    names: list[str],
    should_stop: Optional[Callable[[], bool]] = None,
) -> dict[str, Any]:
    """Measure the curve on the run's embeddings and write ``curve.json`` (raw points and the analysis)."""
    n_now = len(y) / max(units, 1)
    if len(y) > CURVE_MAX:  # 50,000 embeddings refit 18 times would cost minutes: a random sample
        keep = np.sort(np.random.default_rng(0).permutation(len(y))[:CURVE_MAX])
        x, y = x[keep], y[keep]
        sample_weight = None if sample_weight is None else sample_weight[keep]
    raw = curve.measure(x, y, task, units, l2, sample_weight, budget_s=CURVE_BUDGET_S, should_stop=should_stop)
    doc = {
        "raw": curve.to_json(raw),
        "n_now": n_now,
        "noun": noun,
        "names": names,
        "analysis": curve.analyse(raw, n_now, names=names),
    }
    doc["analysis"]["sentence"] = curve.sentence(doc["analysis"], noun)
    atomic_write_text(rd.curve, json.dumps(doc, default=float))
    return doc["analysis"]


def write_label_issues(
    rd: RunDir,
    examples: list[Example],
    y: np.ndarray,
    oof: np.ndarray,
    classes: list[str],
    source: str,
    duplicates: list[dict[str, Any]],
) -> dict[str, Any]:
    """Rank the likely label errors and write ``label_issues.json`` (keys as ``data.exclude`` spells them)."""
    found = find_issues(y, oof)
    root = data_root(source)

    def item(it: dict[str, Any], reason: str) -> dict[str, Any]:
        ex = examples[it["index"]]
        return {
            "key": key_of(ex.path, root),
            "path": ex.path,
            "text": ex.text,
            "given": classes[it["given"]],
            "suggested": classes[it["suggested"]],
            "self_confidence": it["self_confidence"],
            "reason": reason,
        }

    items = [item(it, "confident learning: flagged by the estimated noise rate") for it in found["issues"]]
    doubtful = [item(it, "the out-of-fold head prefers another class") for it in found["doubtful"][:MAX_DOUBTFUL]]
    conflicts = [{**g, "keys": [key_of(p, root) for p in g["paths"]]} for g in duplicate_conflicts(duplicates)]
    doc = {
        "method": "confident learning (Northcutt et al., JAIR 2021) on out-of-fold probabilities",
        "examples_checked": len(examples),
        "estimated_errors": found["estimated"],
        "classes": classes,
        "confident_joint": found["joint"],
        "issues": items,
        "doubtful": doubtful,  # after the issues, ranked the same way: for whoever wants to go on down the list
        "duplicate_conflicts": conflicts,
    }
    atomic_write_text(rd.label_issues, json.dumps(doc, indent=1, default=float))
    return doc


def read_curve(rd: RunDir, target: Optional[float] = None) -> dict[str, Any]:
    """The run's curve, re-analysed for ``target`` (an accuracy) when one is given."""
    doc = _read(rd, rd.curve, "learning curve")
    if target is None:
        return doc["analysis"]
    if not 0 < target < 1:
        raise TlappError(f"--target must be an accuracy between 0 and 1, got {target}")
    out = curve.analyse(curve.from_json(doc["raw"]), doc["n_now"], target=target, names=doc.get("names"))
    out["sentence"] = curve.sentence(out, doc.get("noun", "examples"))
    return out


def read_label_issues(rd: RunDir) -> dict[str, Any]:
    return _read(rd, rd.label_issues, "label check")


def _read(rd: RunDir, path: Path, what: str) -> dict[str, Any]:
    if not rd.root.is_dir():
        raise TlappError(f"{rd.root}: no such run folder")
    if not path.is_file():
        raise TlappError(
            f"{path}: this run has no {what} (it is measured by runs whose head is solved exactly on "
            "single-label classes, from this version on; train again to get one)"
        )
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError) as e:
        raise TlappError(f"{path}: unreadable ({e})") from e
