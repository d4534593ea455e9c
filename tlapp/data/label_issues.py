"""Which labels are likely wrong: confident learning on out-of-fold probabilities.

The method is Northcutt, Jiang & Chuang, "Confident Learning: Estimating
Uncertainty in Dataset Labels" (JAIR 2021). cleanlab implements it but is
AGPL-3.0, so it is written here from the paper (it is short):

1. Per class j, a threshold ``t_j``: the mean predicted probability of j over
   the examples labelled j (how confident the model is on its own class).
2. The confident joint ``C[given][true]``: each example counts under the class
   it is confidently predicted as (``p_j >= t_j``; the largest such p_j when
   several pass), and not at all when none passes.
3. Calibrate C so each row sums to the class's count; its off-diagonal entry
   ``[i][j]`` estimates how many examples labelled i are really j.
4. Prune by noise rate (cleanlab's default): for each off-diagonal ``[i][j]``,
   flag that many examples labelled i with the largest margin ``p_j - p_i``,
   but only where the margin is positive (the head prefers j: a deliberate
   departure, so an example the head agrees with is never flagged). Flagged
   examples are ranked by self-confidence (the probability of their given
   label, lowest first) and suggested their most probable other class.

After the flagged list comes a second, ranked the same way: the other examples
whose most probable class is not their label ("also doubtful"), so a person
who wants more than the confident estimate can go on down one list.

Probabilities must be out of fold (a head that saw an example agrees with its
label), which is what a tlapp run's cross-validation already produces.
Near-duplicate images that carry different labels join the list: at most one
of them can be right.
"""

from __future__ import annotations

from typing import Any

import numpy as np


def thresholds(labels: np.ndarray, probs: np.ndarray) -> np.ndarray:
    """Per class: mean probability of that class among the examples labelled with it (1.0 when none)."""
    k = probs.shape[1]
    return np.array([probs[labels == j, j].mean() if (labels == j).any() else 1.0 for j in range(k)])


def confident_joint(labels: np.ndarray, probs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(C, true)``: the k x k confident joint and each example's confident class (-1: none passed)."""
    k = probs.shape[1]
    passes = probs >= thresholds(labels, probs)[None, :]
    masked = np.where(passes, probs, -1.0)
    true = np.where(passes.any(1), masked.argmax(1), -1)
    joint = np.zeros((k, k), int)
    for given, t in zip(labels, true):
        if t >= 0:
            joint[given, t] += 1
    return joint, true


def calibrate(joint: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Rows rescaled to each class's count (the paper's Eq. 2), so the joint sums to the data size."""
    counts = np.bincount(labels, minlength=joint.shape[0]).astype(float)
    rows = joint.sum(1, keepdims=True).astype(float)
    return np.where(rows > 0, joint / np.maximum(rows, 1) * counts[:, None], 0.0)


def prune_by_noise_rate(labels: np.ndarray, probs: np.ndarray, calibrated: np.ndarray) -> np.ndarray:
    """Indices flagged: per off-diagonal cell [i][j], round(C[i][j]) examples labelled i with the largest
    positive margin p_j - p_i."""
    flagged: set[int] = set()
    k = probs.shape[1]
    for i in range(k):
        idx = np.where(labels == i)[0]
        for j in range(k):
            m = int(round(calibrated[i, j])) if i != j else 0
            if m <= 0 or not len(idx):
                continue
            margin = probs[idx, j] - probs[idx, i]
            order = np.argsort(-margin, kind="stable")[:m]
            flagged.update(int(x) for x in idx[order][margin[order] > 0])
    return np.array(sorted(flagged), int)


def find_issues(labels: np.ndarray, probs: np.ndarray) -> dict[str, Any]:
    """Ranked label issues and the doubtful rest: ``{"issues", "doubtful", "estimated", "joint"}``, each
    issue ``{index, given, suggested, self_confidence}``."""
    labels = labels.astype(int).ravel()
    joint, _ = confident_joint(labels, probs)
    cal = calibrate(joint, labels)
    flagged = prune_by_noise_rate(labels, probs, cal)
    conf = probs[np.arange(len(labels)), labels]
    others = np.where(np.eye(probs.shape[1], dtype=bool)[labels], -1.0, probs)
    suggested = others.argmax(1)
    doubtful = np.setdiff1d(np.where(probs.argmax(1) != labels)[0], flagged)

    def ranked(idx: np.ndarray) -> list[dict[str, Any]]:
        return [
            {
                "index": int(i),
                "given": int(labels[i]),
                "suggested": int(suggested[i]),
                "self_confidence": float(conf[i]),
            }
            for i in idx[np.argsort(conf[idx], kind="stable")]
        ]

    return {
        "issues": ranked(flagged),
        "doubtful": ranked(doubtful),
        "estimated": float(cal.sum() - np.trace(cal)),
        "joint": joint.tolist(),
    }


def duplicate_conflicts(groups: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Duplicate groups from the scan whose members carry different labels (one label at most is right)."""
    out = []
    for g in groups:
        labels = [str(x) for x in g.get("labels", [])]
        if len(set(labels)) > 1:
            out.append({"kind": g.get("kind", "near"), "paths": list(g["paths"]), "labels": labels})
    return out
