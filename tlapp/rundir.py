"""The run directory's small files: resolved config, status, metrics, model card."""
from __future__ import annotations

import hashlib
import json
import time
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING, Any, Optional

from .config import Project, project_to_yaml, resolve_data_path
from .fsutil import atomic_write_text

if TYPE_CHECKING:
    from .training import _Run

_PACKAGES = ("tlapp", "tensorflow", "keras", "keras-hub", "numpy", "pillow")


def versions() -> dict[str, str]:
    out = {}
    for p in _PACKAGES:
        try:
            out[p] = metadata.version(p)
        except metadata.PackageNotFoundError:
            out[p] = "-"
    return out


def absolute_data_path(project: Project, project_file: Optional[Path]) -> Project:
    """Data paths are relative to the project file; a run keeps them absolute."""
    if not project.data.path:
        return project
    p = resolve_data_path(project, project_file) if project_file else Path(project.data.path).expanduser().resolve()
    return project.model_copy(update={"data": project.data.model_copy(update={"path": str(p)})})


def write_resolved_config(project: Project, run_dir: Path) -> None:
    header = [f"# tlapp run config, written {time.strftime('%Y-%m-%d %H:%M:%S')}",
              f"# data split seed: {project.data.seed}; training seed: {project.train.seed}",
              "# versions: " + ", ".join(f"{k}={v}" for k, v in versions().items()), ""]
    atomic_write_text(run_dir / "config.yaml", "\n".join(header) + project_to_yaml(project))


def write_status(run_dir: Path, status: str, message: str = "") -> None:
    atomic_write_text(run_dir / "status.json", json.dumps({"status": status, "message": message, "time": time.time()}))


def read_status(run_dir: Path) -> dict[str, Any]:
    p = Path(run_dir) / "status.json"
    return json.loads(p.read_text()) if p.is_file() else {"status": "unknown"}


def _phase_summary(history: list[dict[str, Any]]) -> list[dict[str, Any]]:
    out: dict[int, dict[str, Any]] = {}
    for row in history:
        ph = out.setdefault(row["phase"], {"phase": row["phase_name"], "epochs": 0, "final": {}, "best": {}})
        ph["epochs"] += 1
        metrics = {k: v for k, v in row.items() if k not in ("phase", "phase_name", "epoch")}
        ph["final"] = metrics
        for k, v in metrics.items():
            better = min if "loss" in k or k.endswith("mae") else max
            ph["best"][k] = better(ph["best"].get(k, v), v)
    return list(out.values())


def write_metrics(run: "_Run", evaluation: dict[str, Any], export: Optional[dict[str, Any]]) -> dict[str, Any]:
    final = dict(run.history[-1]) if run.history else {}
    for k in ("phase", "phase_name", "epoch"):
        final.pop(k, None)
    if evaluation.get("accuracy") is not None:
        final["val_accuracy_exported"] = evaluation["accuracy"]
    metrics = {"final": final, "best": run.best, "phases": _phase_summary(run.history),
               "evaluation": {k: v for k, v in evaluation.items() if k != "predictions"},
               "export": export, "classes": run.classes, "n_train": len(run.splits.train),
               "n_val": len(run.splits.val), "n_test": len(run.splits.test)}
    atomic_write_text(run.run_dir / "metrics.json", json.dumps(metrics, indent=2, default=float))
    return metrics


def _table(rows: list[list[Any]], head: list[str]) -> str:
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    lines += ["| " + " | ".join(str(c) for c in r) + " |" for r in rows]
    return "\n".join(lines)


def write_model_card(run: "_Run", metrics: dict[str, Any], export: Optional[dict[str, Any]]) -> None:
    from .freeze import block_summary, layer_table

    p, b = run.project, run.asm.backbone
    data_hash = hashlib.sha256("\n".join(sorted(e.path for e in run.report.examples)).encode()).hexdigest()[:16]
    ev = metrics.get("evaluation", {})
    parts = [
        f"# Model card: {p.name}", "",
        f"- Task: {p.task.type.value}",
        f"- Backbone: {b.entry.name} ({b.entry.family}, {b.entry.params_m:.1f} M params, licence {b.entry.licence})",
        f"- Weights: {b.weights_source}",
        (f"- Input: raw strings (tokenizer inside the model; {b.size} tokens, padded/truncated)"
         if p.task.type.is_text else
         f"- Input: raw RGB pixels 0-255, any size (resized to {b.size}x{b.size} inside the model; "
         f"backbone scaling '{b.entry.preprocessing}' is built in)"),
        f"- Created: {time.strftime('%Y-%m-%d %H:%M')} with " + ", ".join(f"{k} {v}" for k, v in versions().items()),
        "", "## Data", "",
        f"Source `{run.report.source}` (file-list hash {data_hash}); {len(run.report.examples)} usable, "
        f"{len(run.report.bad)} unusable files skipped, {len(run.report.ignored)} ignored. "
        f"Split seed {p.data.seed}: train {len(run.splits.train)}, val {len(run.splits.val)}, test {len(run.splits.test)}.",
        "", _table([[c, n] for c, n in run.report.counts.items()], ["class", "images"]) if run.report.counts else "",
        "", "## Training", "",
        _table([[i, ph.name, ph.epochs, ph.optimizer, ph.learning_rate, ph.schedule, ph.freeze.mode,
                 ph.freeze.blocks if ph.freeze.blocks is not None else "-"] for i, ph in enumerate(p.train.phases)],
               ["#", "phase", "epochs", "optimizer", "lr", "schedule", "freeze", "blocks"]),
        "", f"Batch size {p.train.batch_size}; class weights {p.train.class_weights}; "
            f"head: pooling {p.head.pooling}, dropout {p.head.dropout}, hidden {p.head.hidden}.",
        "", "Final freeze map (backbone blocks):", "",
        _table([[s["block"], s["layers"], s["params"], s["trainable_params"]]
                for s in block_summary(layer_table(b.model, b.entry))],
               ["block", "layers", "params", "trainable params"]),
        "", "## Metrics", "",
        "```json", json.dumps({"final": metrics.get("final"), "best": metrics.get("best")}, indent=2, default=float), "```",
    ]
    if ev.get("per_class"):
        parts += ["", _table([[c, f"{m['precision']:.3f}", f"{m['recall']:.3f}", f"{m['f1']:.3f}", m["support"]]
                              for c, m in ev["per_class"].items()], ["class", "precision", "recall", "F1", "support"])]
    if export:
        parts += ["", "## Export", "", f"Folder `{export.get('dir')}`; formats {export.get('formats')}.",
                  f"Fresh-process parity check: {export.get('verify', {}).get('summary', 'not run')}"]
    parts += ["", "## Limits", "", "Validated only on the data above; accuracy on other sources may be lower."]
    atomic_write_text(run.run_dir / "model_card.md", "\n".join(parts) + "\n")
