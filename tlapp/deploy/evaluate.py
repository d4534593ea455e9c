"""Evaluation: accuracy, confusion matrix, per-class precision/recall/F1 and
per-example predictions (the GUI's confusion-cell and misclassified views read these).
"""
from __future__ import annotations

from typing import Any, Callable, Optional

import numpy as np

from tlapp.base.errors import Cancelled
from tlapp.config import TaskType
from tlapp.data.labels import LabelEncoder
from tlapp.data.examples import Example


def predict_dataset(model: Any, inputs_ds: Any, progress: Optional[Callable[[int], None]] = None,
                    should_stop: Optional[Callable[[], bool]] = None) -> np.ndarray:
    """Model outputs batch by batch (streamed: only the outputs are kept); ``progress(rows_done)``."""
    out, rows = [], 0
    for x in inputs_ds:
        out.append(np.asarray(model.predict_on_batch(x)))
        rows += len(out[-1])
        if progress:
            progress(rows)
        if should_stop and should_stop():
            raise Cancelled("cancelled while evaluating")
    return np.concatenate(out, axis=0)


def classification_report(y_true: np.ndarray, y_pred: np.ndarray, classes: list[str]) -> dict[str, Any]:
    k = len(classes)
    cm = np.zeros((k, k), dtype=int)
    for t, p in zip(y_true, y_pred):
        cm[int(t), int(p)] += 1
    per = {}
    for i, c in enumerate(classes):
        tp, fp, fn = cm[i, i], cm[:, i].sum() - cm[i, i], cm[i, :].sum() - cm[i, i]
        prec = tp / (tp + fp) if tp + fp else 0.0
        rec = tp / (tp + fn) if tp + fn else 0.0
        per[c] = {"precision": float(prec), "recall": float(rec),
                  "f1": float(2 * prec * rec / (prec + rec)) if prec + rec else 0.0, "support": int(cm[i].sum())}
    return {"accuracy": float(np.trace(cm) / max(cm.sum(), 1)), "confusion_matrix": cm.tolist(), "per_class": per}


def evaluate_examples(model: Any, examples: list[Example], encoder: LabelEncoder, inputs_ds: Any,
                      progress: Optional[Callable[[int], None]] = None,
                      should_stop: Optional[Callable[[], bool]] = None) -> dict[str, Any]:
    """Metrics and per-example predictions; ``inputs_ds`` yields the model inputs in ``examples`` order."""
    return report_from_outputs(predict_dataset(model, inputs_ds, progress, should_stop), examples, encoder)


def report_from_outputs(probs: np.ndarray, examples: list[Example], encoder: LabelEncoder) -> dict[str, Any]:
    """Metrics and per-example predictions from model outputs already computed (e.g. out-of-fold)."""
    task = encoder.task
    if task == TaskType.regression:
        y = np.array([float(e.label) for e in examples])
        err = probs[:, 0] - y
        return {"mae": float(np.abs(err).mean()), "rmse": float(np.sqrt((err ** 2).mean())),
                "predictions": [{"path": e.path, "true": float(t), "pred": float(p)}
                                for e, t, p in zip(examples, y, probs[:, 0])]}
    if task.is_multi_label:
        truth = encoder.encode_all(examples)
        pred = (probs >= 0.5).astype(np.float32)
        return {"accuracy": float((pred == truth).mean()), "exact_match": float((pred == truth).all(1).mean()),
                "predictions": [{"path": e.path, "true": e.label,
                                 "pred": [encoder.classes[j] for j in np.where(p >= 0.5)[0]]}
                                for e, p in zip(examples, probs)]}
    y_true = encoder.encode_all(examples).astype(int)
    y_pred = probs.argmax(1)
    rep = classification_report(y_true, y_pred, encoder.classes)
    rep["classes"] = encoder.classes
    rep["predictions"] = [{"path": e.path, "true": encoder.classes[t], "pred": encoder.classes[p],
                           "score": float(pr[p]), **({"text": e.text[:300]} if e.text else {})}
                          for e, t, p, pr in zip(examples, y_true, y_pred, probs)]
    return rep
