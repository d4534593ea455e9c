"""Work on a finished run without retraining: ``tlapp evaluate`` and ``tlapp export``
(and the GUI's Evaluate / "Export again", which call the same functions).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Optional

import numpy as np

from tlapp.base.errors import DataError, ExportError
from tlapp.config import TaskType
from tlapp.data.examples import Example
from tlapp.data.labels import LabelEncoder
from tlapp.data.sources import scan_data
from tlapp.deploy.evaluate import report_from_outputs
from tlapp.deploy.export import export_model
from tlapp.deploy.formats import formats_for
from tlapp.deploy.loading import load_parts, load_samples
from tlapp.deploy.predict import Predictor, find_export
from tlapp.deploy.tflite import representative_images
from tlapp.rundir import RunDir

FORMATS = ("savedmodel", "keras", "h5", "tflite", "tflite_fp16", "tflite_int8", "onnx")


def _examples(run_dir: Path, data: Optional[Path], task: str, split: str) -> list[Example]:
    if data is None:
        rd = RunDir(run_dir)
        rows = rd.read_json(rd.split)
        if rows is None:
            raise DataError(f"{run_dir}: no split.json; pass --data")
        if split not in ("val", "test"):
            raise DataError(f"--split {split!r}: expected val or test")
        if not rows.get(split):
            raise DataError(
                f"{run_dir}: the run has no {split} split"
                + (" (data.test_fraction was 0); pass --data" if split == "test" else "")
            )
        return [Example(*r) for r in rows[split]]
    return scan_data(data, task).examples


def evaluate_run(run_dir: Path, data: Optional[Path] = None, split: Optional[str] = None) -> dict[str, Any]:
    """The exported model's metrics (every task: see :mod:`tlapp.deploy.metrics`) on the run's
    validation or test split, or on other labelled data (``data``), as ``tlapp predict`` computes
    its outputs: what a deployment of the export would score.

    ``split`` None: the test split when the run has one, else validation. When the final model was refit
    on the validation examples, scoring them measures data it saw: the report carries a ``warning``.
    """
    pred = Predictor.load(run_dir)
    task = TaskType(pred.meta["task"])
    if split is None:
        rows = RunDir(run_dir).read_json(RunDir(run_dir).split) or {}
        split = "test" if rows.get("test") and data is None else "val"
    examples = _examples(Path(run_dir), data, task.value, split)
    classes = pred.meta.get("classes") or []
    if task != TaskType.regression:
        labels = {lab for e in examples for lab in (e.label if task.is_multi_label else [e.label])}
        unknown = sorted(labels - set(classes))
        if unknown:
            raise DataError(
                f"{data or run_dir}: labels not known to the model: {', '.join(unknown)} (model classes: {classes})"
            )
    if pred.is_text:
        results = pred.predict_texts([e.text or "" for e in examples])
    else:
        results = pred.predict_files([e.path for e in examples])
    kept = [(r, e) for r, e in zip(results, examples) if "error" not in r]
    outputs = np.array(
        [[r["value"]] if "value" in r else [r["scores"][c] for c in classes] for r, _ in kept], np.float32
    ).reshape(len(kept), -1)
    rep = report_from_outputs(outputs, [e for _, e in kept], LabelEncoder(task, classes), pred.meta.get("thresholds"))
    rep["n"], rep["split"] = len(kept), "data" if data else split
    rep["unreadable"] = [r["path"] for r in results if "error" in r]
    if data is None and split == "val" and pred.meta.get("validation_seen_in_training"):
        rep["warning"] = (
            "the final model was refit on these validation examples, so this score is optimistic; "
            "the honest estimate is the run's cross-validation (evaluation.json), or train with "
            "data.test_fraction and use --split test"
        )
    return rep


def reexport(run_dir: Path, formats: list[str], out_dir: Optional[Path] = None) -> dict[str, Any]:
    """Export a finished run again (other formats or another folder), verified in a fresh process. Into
    the run's own ``export/``, the requested formats are added to (or replace) those already there."""
    bad = [f for f in formats if f not in FORMATS]
    if bad:
        raise ExportError(f"--format {bad[0]!r}: expected one of {', '.join(FORMATS)}")
    src = find_export(Path(run_dir))
    task = TaskType(json.loads((src / "meta.json").read_text())["task"])
    cannot = [f for f in formats if f not in formats_for(task)]
    if cannot:
        raise ExportError(f"--format {cannot[0]!r}: a {task.value} model exports {', '.join(formats_for(task))}")
    parts = load_parts(src)
    parts.validation_seen = bool(json.loads((src / "meta.json").read_text()).get("validation_seen_in_training"))
    if "tflite_int8" in formats and not parts.is_text:
        rows = RunDir(run_dir).read_json(RunDir(run_dir).split) or {}
        parts.representative = representative_images([r[0] for r in rows.get("train", [])], parts.size)
    target = Path(out_dir) if out_dir else src
    # Re-exporting in place keeps model.keras: it is the source of every later re-export.
    fmts = sorted(set(formats) | ({"keras"} if target == src else set()))
    # In place, the formats already there stay (and are checked again with the new ones).
    return export_model(parts, target, fmts, load_samples(src), keep_existing=target == src)
