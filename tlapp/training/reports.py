"""What a finished run writes about itself: ``metrics.json`` and ``model_card.md``.

Both are built from a :class:`RunRecord` — plain data the trainer hands over —
so the reports never reach into the trainer's internals.
"""
from __future__ import annotations

import hashlib
import json
import time
from dataclasses import dataclass, field
from typing import Any, Optional

from tlapp.backbones.catalog import BackboneEntry
from tlapp.base.fsutil import atomic_write_text
from tlapp.config import Project
from tlapp.data.examples import ScanReport
from tlapp.data.split import Splits
from tlapp.rundir import RunDir, versions

_NOT_METRICS = ("phase", "phase_name", "epoch")


@dataclass
class RunRecord:
    """Everything the reports say about a run."""

    project: Project
    run_dir: RunDir
    scan: ScanReport
    splits: Splits
    classes: list[str]
    history: list[dict[str, Any]]
    best: dict[str, Any]
    entry: BackboneEntry
    weights_source: str
    input_size: int
    freeze_map: list[dict[str, Any]]  # tlapp.backbones.freeze.block_summary of the final model
    recipe: dict[str, Any] = field(default_factory=dict)  # what the recipe decided, and its CV estimate
    seconds: float = 0.0  # wall time of the (last) training session, scan to export


def metric_mode(key: str) -> str:
    """'min' for losses and errors, 'max' for scores."""
    return "min" if "loss" in key or key.endswith(("mae", "mse", "rmse")) else "max"


def _phase_summary(history: list[dict[str, Any]]) -> list[dict[str, Any]]:
    out: dict[int, dict[str, Any]] = {}
    for row in history:
        ph = out.setdefault(row["phase"], {"phase": row["phase_name"], "epochs": 0, "final": {}, "best": {}})
        ph["epochs"] += 1
        metrics = {k: v for k, v in row.items() if k not in _NOT_METRICS}
        ph["final"] = metrics
        for k, v in metrics.items():
            better = min if metric_mode(k) == "min" else max
            ph["best"][k] = better(ph["best"].get(k, v), v)
    return list(out.values())


def write_metrics(rec: RunRecord, evaluation: dict[str, Any], export: Optional[dict[str, Any]]) -> dict[str, Any]:
    final = {k: v for k, v in (rec.history[-1] if rec.history else {}).items() if k not in _NOT_METRICS}
    if evaluation.get("accuracy") is not None:
        cv = evaluation.get("method") == "cross-validation"
        final["cv_accuracy" if cv else "val_accuracy_exported"] = evaluation["accuracy"]
    metrics = {"final": final, "best": rec.best, "phases": _phase_summary(rec.history), "recipe": rec.recipe,
               "evaluation": {k: v for k, v in evaluation.items() if k != "predictions"},
               "export": export, "classes": rec.classes, "n_train": len(rec.splits.train),
               "n_val": len(rec.splits.val), "n_test": len(rec.splits.test),
               "seconds": round(rec.seconds, 1), "finished": time.time()}
    atomic_write_text(rec.run_dir.metrics, json.dumps(metrics, indent=2, default=float))
    return metrics


def _table(rows: list[list[Any]], head: list[str]) -> str:
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    lines += ["| " + " | ".join(str(c) for c in r) + " |" for r in rows]
    return "\n".join(lines)


def _data_section(rec: RunRecord) -> list[str]:
    p, scan = rec.project, rec.scan
    data_hash = hashlib.sha256("\n".join(sorted(e.path for e in scan.examples)).encode()).hexdigest()[:16]
    return [
        "## Data", "",
        f"Source `{scan.source}` (file-list hash {data_hash}); {len(scan.examples)} usable, "
        f"{len(scan.bad)} unusable files skipped, {len(scan.ignored)} ignored. "
        f"Split seed {p.data.seed}: train {len(rec.splits.train)}, val {len(rec.splits.val)}, "
        f"test {len(rec.splits.test)}.",
        "", _table([[c, n] for c, n in scan.counts.items()], ["class", "examples"]) if scan.counts else "",
    ]


def _training_section(rec: RunRecord) -> list[str]:
    p = rec.project
    parts = ["## Training", ""]
    if rec.recipe:
        parts += [f"Recipe: {rec.recipe.get('summary', '')}", ""]
    parts += [
        _table([[i, ph.name, ph.epochs, ph.optimizer, ph.learning_rate, ph.schedule, ph.freeze.mode,
                 ph.freeze.blocks if ph.freeze.blocks is not None else "-"] for i, ph in enumerate(p.train.phases)],
               ["#", "phase", "epochs", "optimizer", "lr", "schedule", "freeze", "blocks"]),
        "", f"Batch size {p.train.batch_size}; class weights {p.train.class_weights}; "
            f"head: pooling {p.head.pooling}, dropout {p.head.dropout}, hidden {p.head.hidden}.",
        "", "Final freeze map (backbone blocks):", "",
        _table([[s["block"], s["layers"], s["params"], s["trainable_params"]] for s in rec.freeze_map],
               ["block", "layers", "params", "trainable params"]),
    ]
    return parts


def write_model_card(rec: RunRecord, metrics: dict[str, Any], export: Optional[dict[str, Any]]) -> None:
    p, e = rec.project, rec.entry
    ev = metrics.get("evaluation", {})
    parts = [
        f"# Model card: {p.name}", "",
        f"- Task: {p.task.type.value}",
        f"- Backbone: {e.name} ({e.family}, {e.params_m:.1f} M params, licence {e.licence})",
        f"- Weights: {rec.weights_source}",
        (f"- Input: raw strings (tokenizer inside the model; {rec.input_size} tokens, padded/truncated)"
         if p.task.type.is_text else
         f"- Input: raw RGB pixels 0-255, any size (resized to {rec.input_size}x{rec.input_size} inside the model; "
         f"backbone scaling '{e.preprocessing}' is built in)"),
        f"- Created: {time.strftime('%Y-%m-%d %H:%M')} with " + ", ".join(f"{k} {v}" for k, v in versions().items()),
        "", *_data_section(rec), "", *_training_section(rec), "", "## Metrics", "",
        "```json", json.dumps({"final": metrics.get("final"), "best": metrics.get("best"),
                               "cross_validation": rec.recipe.get("cv")}, indent=2, default=float), "```",
    ]
    if ev.get("per_class"):
        parts += ["", _table([[c, f"{m['precision']:.3f}", f"{m['recall']:.3f}", f"{m['f1']:.3f}", m["support"]]
                              for c, m in ev["per_class"].items()], ["class", "precision", "recall", "F1", "support"])]
    if export:
        parts += ["", "## Export", "", f"Folder `{export.get('dir')}`; formats {export.get('formats')}.",
                  f"Fresh-process parity check: {export.get('verify', {}).get('summary', 'not run')}"]
    parts += ["", "## Limits", "", "Validated only on the data above; accuracy on other sources may be lower."]
    atomic_write_text(rec.run_dir.model_card, "\n".join(parts) + "\n")
