"""A finished (or stopped) run at a glance: the one headline the CLI prints,
the wizard's summary card shows and its recent list quotes.

Reads only the run folder's small files (no TensorFlow), so the wizard can
list runs and open one instantly.
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

from tlapp.base.errors import DataError, TlappError
from tlapp.config import load_project
from tlapp.model.tasks import metric_name
from tlapp.rundir import RunDir


@dataclass(frozen=True)
class RunSummary:
    run_dir: Path
    project: str
    task: str
    is_text: bool
    status: str  # completed | cancelled | failed | running | unknown
    finished: Optional[float]  # epoch seconds
    metric: Optional[str]  # "accuracy", "mae", "loss"...
    value: Optional[float]
    how: str  # how the figure was measured, in words
    best_phase: Optional[str]
    seconds: Optional[float]
    export_dir: Optional[Path]
    verified: Optional[bool]
    recipe: str

    @property
    def headline(self) -> str:
        """``"accuracy 0.9488, estimated by 5-fold cross-validation on 1,797 examples (…)"``."""
        if self.value is None or self.metric is None:
            return f"run {self.status}; no evaluation"
        return f"{self.metric} {self.value:.4f}, {self.how}"

    @property
    def short(self) -> str:
        """For lists: ``"accuracy 0.949"``, or the status when there is no figure."""
        return f"{self.metric} {self.value:.3f}" if self.value is not None and self.metric else self.status

    def predict_command(self) -> str:
        """The shell line that predicts with this run's exported model."""
        if self.task in ("sft", "dpo"):
            return f'tlapp generate {shlex.quote(str(self.run_dir))} "your question"'
        example = '"some text to classify"' if self.is_text else "path/to/image.jpg"
        return f"tlapp predict {shlex.quote(str(self.run_dir))} {example}"


def _headline_metric(metrics: dict[str, Any], task_metric: str) -> tuple[Optional[str], Optional[float], str]:
    ev, fin = metrics.get("evaluation") or {}, metrics.get("final") or {}
    n_val = metrics.get("n_val") or 0
    if ev.get("accuracy") is not None and ev.get("method") == "cross-validation":
        recipe = metrics.get("recipe") or {}
        folds = recipe.get("cv", {}).get("folds", "k")
        n = (metrics.get("n_train") or 0) + n_val
        final = "refit on all of them" if recipe.get("refit") else "trained on the training split only"
        return (
            "accuracy",
            float(ev["accuracy"]),
            f"estimated by {folds}-fold cross-validation on {n:,} examples "
            f"(each scored by a head that never saw it; the final model was {final})",
        )
    if ev.get("accuracy") is not None:
        return (
            "accuracy",
            float(ev["accuracy"]),
            f"on {n_val:,} validation examples ({ev.get('note') or 'exported model'})",
        )
    for key in (f"val_{task_metric}", "val_loss"):
        if fin.get(key) is not None:
            what = {"sft": "pairs (answer tokens)", "dpo": "preference triples"}.get(metrics.get("task"), "examples")
            return key.removeprefix("val_"), float(fin[key]), f"on {n_val:,} validation {what}"
    return None, None, ""


def summarize_run(run_dir: str | Path) -> RunSummary:
    """Read a run folder; :class:`DataError` when it is not one."""
    rd = RunDir(run_dir)
    if not rd.config.is_file():
        raise DataError(f"{rd.root}: not a tlapp run folder (no config.yaml)")
    project = load_project(rd.config)
    status = rd.status().get("status", "unknown")
    metrics = rd.read_json(rd.metrics, {}) or {}
    metric, value, how = _headline_metric(metrics, metric_name(project.task.type))
    best = metrics.get("best") or {}
    export = metrics.get("export") or {}
    finished = metrics.get("finished") or (rd.metrics.stat().st_mtime if rd.metrics.is_file() else None)
    return RunSummary(
        run_dir=rd.root,
        project=project.name,
        task=project.task.type.value,
        is_text=project.task.type.is_text,
        status=status,
        finished=finished,
        metric=metric,
        value=value,
        how=how,
        best_phase=best.get("phase_name"),
        seconds=metrics.get("seconds"),
        export_dir=Path(export["dir"]) if export.get("dir") else None,
        verified=export.get("verified"),
        recipe=(metrics.get("recipe") or {}).get("summary", ""),
    )


def latest_run(project_file: Path, project_name: str) -> Optional[RunSummary]:
    """The newest finished run of a project: ``runs/<name>-<time>`` beside its file."""
    runs = Path(project_file).parent / "runs"
    if not runs.is_dir():
        return None
    done = [d for d in runs.glob(f"{project_name}-*") if RunDir(d).is_finished()]
    for d in sorted(done, key=lambda d: RunDir(d).metrics.stat().st_mtime, reverse=True):
        try:
            return summarize_run(d)
        except (TlappError, OSError, ValueError):
            continue
    return None
