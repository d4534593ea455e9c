"""Helpers behind ``tlapp evaluate`` and ``tlapp export`` on finished runs."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Optional

import numpy as np

from .errors import DataError, ExportError


def _examples(run_dir: Path, data: Optional[Path], task: str) -> list[tuple[str, Any]]:
    if data is None:
        split = run_dir / "split.json"
        if not split.is_file():
            raise DataError(f"{run_dir}: no split.json; pass --data")
        return [tuple(r) for r in json.loads(split.read_text())["val"]]
    from .scan import scan

    rep = scan(data, task)
    return [(e.path, e.label) for e in rep.examples]


def _check_known(rows: list[tuple[Any, Any]], classes: list[str], data: Optional[Path]) -> None:
    unknown = sorted({lab for _, lab in rows if lab not in classes})
    if unknown:
        raise DataError(f"{data}: labels not known to the model: {', '.join(unknown)} (model classes: {classes})")


def evaluate_run(run_dir: Path, data: Optional[Path] = None) -> dict[str, Any]:
    from .evaluate import classification_report
    from .predict import Predictor

    pred = Predictor.load(run_dir)
    if pred.meta["task"] == "text_classification":
        return _evaluate_text(pred, Path(run_dir), data)
    if pred.meta["task"] != "image_classification":
        raise DataError(f"{run_dir}: `tlapp evaluate` supports single-label classification; task is {pred.meta['task']}")
    rows = _examples(Path(run_dir), data, pred.meta["task"])
    classes = pred.meta["classes"]
    _check_known(rows, classes, data)
    results = pred.predict_files([p for p, _ in rows])
    ok = [(r, lab) for r, (_, lab) in zip(results, rows) if "error" not in r]
    y_true = np.array([classes.index(lab) for _, lab in ok])
    y_pred = np.array([classes.index(r["label"]) for r, _ in ok])
    rep = classification_report(y_true, y_pred, classes)
    rep["n"] = len(ok)
    return rep


def reexport(run_dir: Path, formats: list[str], out_dir: Optional[Path] = None) -> dict[str, Any]:
    from .export import export_model
    from .predict import find_export
    from .tfenv import quiet_import, quiet_keras_hub

    _, keras = quiet_import()
    import tlapp.assemble  # noqa: F401  custom layers

    quiet_keras_hub()
    bad = [f for f in formats if f not in ("savedmodel", "keras", "h5")]
    if bad:
        raise ExportError(f"--format {bad[0]!r}: expected savedmodel, keras or h5")
    src = find_export(Path(run_dir))
    if not (src / "model.keras").is_file():
        raise ExportError(f"{src}: model.keras is missing; re-run training with export.formats including keras")
    meta = json.loads((src / "meta.json").read_text())
    model = keras.saving.load_model(src / "model.keras", compile=False)
    samples = np.load(src / "parity_samples.npz", allow_pickle=True)["images"] if (src / "parity_samples.npz").is_file() else None
    target = out_dir or src
    fmts = sorted(set(formats) | ({"keras"} if target == src else set()))
    return export_model(model, Path(target), size=meta["image_size"], task=meta["task"], classes=meta["classes"],
                        formats=fmts, backbone=meta["backbone"], samples=samples)


def _evaluate_text(pred: Any, run_dir: Path, data: Optional[Path]) -> dict[str, Any]:
    from .evaluate import classification_report

    if data is None:
        rows = [(r[2], r[1]) for r in json.loads((run_dir / "split.json").read_text())["val"]]
    else:
        from .textdata import scan_text

        rows = [(e.text, e.label) for e in scan_text(data, "text_classification").examples]
    classes = pred.meta["classes"]
    _check_known(rows, classes, data)
    res = pred.predict_texts([t for t, _ in rows])
    rep = classification_report(np.array([classes.index(l) for _, l in rows]),
                                np.array([classes.index(r["label"]) for r in res]), classes)
    rep["n"] = len(rows)
    return rep
