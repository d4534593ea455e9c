"""Work on a finished run without retraining: ``tlapp evaluate`` and ``tlapp export``
(and the GUI's Evaluate / "Export again", which call the same functions).
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Optional

import numpy as np

from tlapp.base.errors import DataError, ExportError
from tlapp.data.examples import Example
from tlapp.data.sources import scan_data
from tlapp.deploy.evaluate import classification_report
from tlapp.deploy.export import export_model
from tlapp.deploy.loading import load_parts, load_samples
from tlapp.deploy.predict import Predictor, find_export
from tlapp.rundir import RunDir

FORMATS = ("savedmodel", "keras", "h5")


def _examples(run_dir: Path, data: Optional[Path], task: str) -> list[Example]:
    if data is None:
        rd = RunDir(run_dir)
        rows = rd.read_json(rd.split)
        if rows is None:
            raise DataError(f"{run_dir}: no split.json; pass --data")
        return [Example(*r) for r in rows["val"]]
    return scan_data(data, task).examples


def evaluate_run(run_dir: Path, data: Optional[Path] = None) -> dict[str, Any]:
    """Accuracy, per-class P/R/F1 and the confusion matrix of the exported model on the run's
    validation split, or on other labelled data (``data``)."""
    pred = Predictor.load(run_dir)
    task = pred.meta["task"]
    if task not in ("image_classification", "text_classification"):
        raise DataError(f"{run_dir}: `tlapp evaluate` supports single-label classification; task is {task}")
    examples = _examples(Path(run_dir), data, task)
    classes = pred.meta["classes"]
    unknown = sorted({e.label for e in examples if e.label not in classes})
    if unknown:
        raise DataError(f"{data}: labels not known to the model: {', '.join(unknown)} (model classes: {classes})")
    if pred.is_text:
        results = pred.predict_texts([e.text or "" for e in examples])
    else:
        results = pred.predict_files([e.path for e in examples])
    ok = [(r, e.label) for r, e in zip(results, examples) if "error" not in r]
    rep = classification_report(np.array([classes.index(lab) for _, lab in ok]),
                                np.array([classes.index(r["label"]) for r, _ in ok]), classes)
    rep["n"] = len(ok)
    return rep


def reexport(run_dir: Path, formats: list[str], out_dir: Optional[Path] = None) -> dict[str, Any]:
    """Export a finished run again (other formats or another folder), verified in a fresh process."""
    bad = [f for f in formats if f not in FORMATS]
    if bad:
        raise ExportError(f"--format {bad[0]!r}: expected one of {', '.join(FORMATS)}")
    src = find_export(Path(run_dir))
    parts = load_parts(src)
    target = Path(out_dir) if out_dir else src
    # Re-exporting in place keeps model.keras: it is the source of every later re-export.
    fmts = sorted(set(formats) | ({"keras"} if target == src else set()))
    return export_model(parts, target, fmts, load_samples(src))
