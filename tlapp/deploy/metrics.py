"""Metrics for every task, from model outputs and true targets (scikit-learn does the counting).

One function per task kind, each returning plain JSON-ready dicts: what ``evaluation.json``,
``tlapp evaluate``, the model card and the wizard's Evaluate step show. The only numbers computed
here rather than by scikit-learn are the calibration bins and their expected calibration error
(ECE), which scikit-learn does not offer with bin counts.
"""

from __future__ import annotations

from typing import Any, Optional

import numpy as np
from sklearn import metrics as skm

CALIBRATION_BINS = 10


def calibration(confidence: np.ndarray, correct: np.ndarray, bins: int = CALIBRATION_BINS) -> dict[str, Any]:
    """Reliability curve and ECE of the top-label confidence.

    Per equal-width confidence bin: how many predictions fell in it, their mean confidence and
    how often they were right. ECE is the count-weighted mean gap between the two: 0 means a
    model that says "80 %" is right 80 % of the time.
    """
    edges = np.linspace(0.0, 1.0, bins + 1)
    idx = np.clip(np.digitize(confidence, edges[1:-1], right=True), 0, bins - 1)
    rows, ece, n = [], 0.0, max(len(confidence), 1)
    for b in range(bins):
        m = idx == b
        count = int(m.sum())
        conf = float(confidence[m].mean()) if count else None
        acc = float(correct[m].mean()) if count else None
        if count:
            ece += count / n * abs(acc - conf)  # type: ignore[operator]
        rows.append(
            {"low": float(edges[b]), "high": float(edges[b + 1]), "count": count, "confidence": conf, "accuracy": acc}
        )
    return {"bins": rows, "ece": float(ece)}


def single_label(probs: np.ndarray, y_true: np.ndarray, classes: list[str]) -> dict[str, Any]:
    """Accuracy, top-k, per-class and averaged P/R/F1, confusion (counts and row-normalised),
    ROC-AUC for two classes, and calibration."""
    k = len(classes)
    labels = list(range(k))
    y_pred = probs.argmax(1)
    p, r, f, s = skm.precision_recall_fscore_support(y_true, y_pred, labels=labels, zero_division=0)
    out: dict[str, Any] = {
        "accuracy": float(skm.accuracy_score(y_true, y_pred)),
        "per_class": {
            c: {"precision": float(p[i]), "recall": float(r[i]), "f1": float(f[i]), "support": int(s[i])}
            for i, c in enumerate(classes)
        },
        "confusion_matrix": skm.confusion_matrix(y_true, y_pred, labels=labels).tolist(),
        "confusion_matrix_normalized": np.nan_to_num(
            skm.confusion_matrix(y_true, y_pred, labels=labels, normalize="true")
        )
        .round(4)
        .tolist(),
    }
    for avg in ("macro", "weighted"):
        ap, ar, af, _ = skm.precision_recall_fscore_support(y_true, y_pred, labels=labels, average=avg, zero_division=0)
        out[avg] = {"precision": float(ap), "recall": float(ar), "f1": float(af)}
    out["top_k_accuracy"] = {
        str(t): float(skm.top_k_accuracy_score(y_true, probs, k=t, labels=labels)) for t in (2, 3, 5) if t < k
    }
    if k == 2 and len(set(y_true.tolist())) == 2:
        out["roc_auc"] = float(skm.roc_auc_score(y_true, probs[:, 1]))
    out["calibration"] = calibration(probs.max(1), (y_pred == y_true).astype(float))
    return out


def tune_thresholds(probs: np.ndarray, y_true: np.ndarray) -> np.ndarray:
    """Per label, the score threshold with the best F1 on these (validation) examples; 0.5 for a
    label with no positive example to tune on."""
    out = np.full(probs.shape[1], 0.5)
    for j in range(probs.shape[1]):
        if y_true[:, j].sum() == 0:
            continue
        prec, rec, thr = skm.precision_recall_curve(y_true[:, j], probs[:, j])
        f1 = np.where(prec + rec > 0, 2 * prec * rec / np.maximum(prec + rec, 1e-12), 0.0)[:-1]
        if len(thr):
            out[j] = float(thr[int(np.argmax(f1))])
    return out


def multi_label(
    probs: np.ndarray, y_true: np.ndarray, classes: list[str], thresholds: Optional[np.ndarray] = None
) -> dict[str, Any]:
    """Per-label P/R/F1 at the thresholds (0.5 unless given), mAP, and the thresholds that would
    maximise each label's F1 here, with the F1 they reach."""
    y_true = y_true.astype(int)
    thr = np.full(len(classes), 0.5) if thresholds is None else np.asarray(thresholds, float)
    pred = (probs >= thr).astype(int)
    p, r, f, s = skm.precision_recall_fscore_support(y_true, pred, zero_division=0)
    has_pos = y_true.sum(0) > 0
    ap = [
        float(skm.average_precision_score(y_true[:, j], probs[:, j])) if has_pos[j] else None
        for j in range(len(classes))
    ]
    tuned = tune_thresholds(probs, y_true)
    tuned_f1 = skm.f1_score(y_true, (probs >= tuned).astype(int), average=None, zero_division=0)
    return {
        "accuracy": float((pred == y_true).mean()),  # per label decision
        "exact_match": float(skm.accuracy_score(y_true, pred)),
        "mAP": float(np.mean([a for a in ap if a is not None])) if any(a is not None for a in ap) else None,
        "per_label": {
            c: {
                "precision": float(p[j]),
                "recall": float(r[j]),
                "f1": float(f[j]),
                "support": int(s[j]),
                "threshold": float(thr[j]),
                "average_precision": ap[j],
                "tuned_threshold": float(tuned[j]),
                "tuned_f1": float(tuned_f1[j]),
            }
            for j, c in enumerate(classes)
        },
        "macro_f1": float(skm.f1_score(y_true, pred, average="macro", zero_division=0)),
    }


def regression(pred: np.ndarray, y_true: np.ndarray) -> dict[str, Any]:
    """MAE, RMSE, R² and a summary of the residuals (prediction minus truth)."""
    pred, y_true = pred.reshape(-1).astype(float), y_true.reshape(-1).astype(float)
    res = pred - y_true
    out = {
        "mae": float(skm.mean_absolute_error(y_true, pred)),
        "rmse": float(np.sqrt(skm.mean_squared_error(y_true, pred))),
        "residuals": {
            "mean": float(res.mean()) if len(res) else 0.0,
            "std": float(res.std()) if len(res) else 0.0,
            "max_abs": float(np.abs(res).max()) if len(res) else 0.0,
        },
    }
    out["r2"] = float(skm.r2_score(y_true, pred)) if len(y_true) > 1 and np.ptp(y_true) > 0 else None
    return out


def summary_lines(rep: dict[str, Any]) -> list[str]:
    """An evaluation report as plain lines (``tlapp evaluate``, the model card)."""
    n = rep.get("n", rep.get("count", 0))
    where = {"val": "validation split", "test": "test split", "data": "the given data"}.get(rep.get("split", ""), "")
    head = f"on {n} examples" + (f" of the {where}" if where else "")
    if "rmse" in rep:
        r2 = rep.get("r2")
        return [
            f"MAE {rep['mae']:.4f}  RMSE {rep['rmse']:.4f}  R² {'—' if r2 is None else f'{r2:.4f}'}  {head}",
            f"residuals: mean {rep['residuals']['mean']:+.4f}, sd {rep['residuals']['std']:.4f}, "
            f"largest {rep['residuals']['max_abs']:.4f}",
        ]
    if "per_label" in rep:
        lines = [
            f"mAP {rep['mAP'] if rep['mAP'] is None else format(rep['mAP'], '.4f')}  macro F1 "
            f"{rep['macro_f1']:.4f}  exact match {rep['exact_match']:.4f}  {head}"
        ]
        for c, m in rep["per_label"].items():
            lines.append(
                f"  {c}: P {m['precision']:.3f} R {m['recall']:.3f} F1 {m['f1']:.3f} at {m['threshold']:.2f} "
                f"(best F1 {m['tuned_f1']:.3f} at {m['tuned_threshold']:.2f}; n={m['support']})"
            )
        return lines
    parts = [f"accuracy {rep['accuracy']:.4f}"]
    parts += [f"top-{k} {v:.4f}" for k, v in rep.get("top_k_accuracy", {}).items()]
    parts += [f"macro F1 {rep['macro']['f1']:.4f}"] if "macro" in rep else []
    lines = ["  ".join(parts + [head])]
    if "roc_auc" in rep:
        lines.append(f"ROC-AUC {rep['roc_auc']:.4f}")
    if "calibration" in rep:
        lines.append(f"calibration: ECE {rep['calibration']['ece']:.4f} (0 = confidence matches accuracy)")
    for c, m in rep.get("per_class", {}).items():
        lines.append(
            f"  {c}: precision {m['precision']:.3f} recall {m['recall']:.3f} f1 {m['f1']:.3f} (n={m['support']})"
        )
    return lines
