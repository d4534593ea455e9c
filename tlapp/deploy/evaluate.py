"""Evaluation: a model's outputs over labelled examples, its metrics (:mod:`tlapp.deploy.metrics`)
and per-example predictions (the GUI's confusion-cell and misclassified views read these).
"""

from __future__ import annotations

from typing import Any, Callable, Optional

import numpy as np

from tlapp.base.errors import Cancelled
from tlapp.config import TaskType
from tlapp.data.examples import Example
from tlapp.data.labels import LabelEncoder
from tlapp.deploy import metrics


def predict_dataset(
    model: Any,
    inputs_ds: Any,
    progress: Optional[Callable[[int], None]] = None,
    should_stop: Optional[Callable[[], bool]] = None,
) -> np.ndarray:
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


def evaluate_examples(
    model: Any,
    examples: list[Example],
    encoder: LabelEncoder,
    inputs_ds: Any,
    progress: Optional[Callable[[int], None]] = None,
    should_stop: Optional[Callable[[], bool]] = None,
) -> dict[str, Any]:
    """Metrics and per-example predictions; ``inputs_ds`` yields the model inputs in ``examples`` order."""
    return report_from_outputs(predict_dataset(model, inputs_ds, progress, should_stop), examples, encoder)


def report_from_outputs(
    probs: np.ndarray, examples: list[Example], encoder: LabelEncoder, thresholds: Optional[np.ndarray] = None
) -> dict[str, Any]:
    """Metrics (:mod:`tlapp.deploy.metrics`) and per-example predictions from model outputs already
    computed (e.g. out-of-fold). ``thresholds``: multi-label decision thresholds (default 0.5)."""
    task = encoder.task
    if task == TaskType.regression:
        y = np.array([float(e.label) for e in examples])
        return {
            **metrics.regression(probs[:, 0], y),
            "count": len(examples),
            "predictions": [
                {"path": e.path, "true": float(t), "pred": float(p)} for e, t, p in zip(examples, y, probs[:, 0])
            ],
        }
    if task.is_multi_label:
        truth = encoder.encode_all(examples)
        rep = metrics.multi_label(probs, truth, encoder.classes, thresholds)
        thr = np.array([v["threshold"] for v in rep["per_label"].values()])
        return {
            **rep,
            "classes": encoder.classes,
            "count": len(examples),
            "predictions": [
                {
                    "path": e.path,
                    "true": e.label,
                    "pred": [encoder.classes[j] for j in np.where(p >= thr)[0]],
                    "scores": [round(float(v), 4) for v in p],
                }
                for e, p in zip(examples, probs)
            ],
        }
    y_true = encoder.encode_all(examples).astype(int)
    y_pred = probs.argmax(1)
    rep = metrics.single_label(probs, y_true, encoder.classes)
    rep["classes"] = encoder.classes
    rep["count"] = len(examples)
    rep["predictions"] = [
        {
            "path": e.path,
            "true": encoder.classes[t],
            "pred": encoder.classes[p],
            "score": float(pr[p]),
            "true_score": float(pr[t]),
            **({"text": e.text[:300]} if e.text else {}),
        }
        for e, t, p, pr in zip(examples, y_true, y_pred, probs)
    ]
    return rep


def confidently_wrong(report: dict[str, Any], per_class: int = 5) -> dict[str, list[dict[str, Any]]]:
    """Per true class, its misclassified examples the model was surest about (single-label reports):
    the first place to look for label errors and for what the model has not learned."""
    out: dict[str, list[dict[str, Any]]] = {}
    for p in sorted(
        (
            p
            for p in report.get("predictions", [])
            if "pred" in p and isinstance(p["pred"], str) and p["true"] != p["pred"]
        ),
        key=lambda p: -float(p.get("score", 0.0)),
    ):
        group = out.setdefault(str(p["true"]), [])
        if len(group) < per_class:
            group.append(p)
    return dict(sorted(out.items()))
