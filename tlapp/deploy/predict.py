"""Prediction from an exported model or a run directory.

Uses the SavedModel (plain TensorFlow, no custom objects), so what ``tlapp
predict`` returns is exactly what a deployment of the export returns. Images
are decoded and resized the same way as in training (:mod:`tlapp.data.imageio`).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from tlapp.base.errors import DataError, ExportError
from tlapp.base.tfenv import quiet_import
from tlapp.data.imageio import IMAGE_EXTS, ImageProblem, load_rgb


def find_export(path: Path) -> Path:
    """Accept a run dir, its ``export/`` folder, or a ``saved_model`` folder."""
    path = Path(path)
    for cand in (path / "export", path, path.parent):
        if (cand / "meta.json").is_file() and (cand / "saved_model").is_dir():
            return cand
        if (cand / "preset" / "config.json").is_file() or (cand / "lora.weights.h5").is_file():
            raise ExportError(
                f'{path}: a fine-tuned language model; ask it with `tlapp generate {path} "your '
                'question"` (predict, evaluate and export are for classifiers)'
            )
    raise ExportError(f"{path}: no exported model found (expected export/saved_model and export/meta.json)")


@dataclass
class Predictor:
    export_dir: Path
    meta: dict[str, Any]
    fn: Any

    @classmethod
    def load(cls, path: str | Path) -> "Predictor":
        tf, _ = quiet_import()
        d = find_export(Path(path))
        meta = json.loads((d / "meta.json").read_text())
        if meta.get("input") == "text":
            import tensorflow_text  # noqa: F401  registers the tokenizer ops
        sm = tf.saved_model.load(str(d / "saved_model"))
        return cls(d, meta, sm.signatures["serving_default"])

    @property
    def is_text(self) -> bool:
        return self.meta.get("input") == "text"

    def predict_texts(self, texts: list[str], batch: int = 64) -> list[dict[str, Any]]:
        tf, _ = quiet_import()
        out: list[dict[str, Any]] = []
        for start in range(0, len(texts), batch):
            chunk = texts[start : start + batch]
            scores = self.fn(text=tf.constant(chunk))[self.meta["output_key"]].numpy()
            out += [{**self.describe("", s), "text": t} for t, s in zip(chunk, scores)]
        for r in out:
            r.pop("path", None)
        return out

    def predict_arrays(self, images: np.ndarray) -> np.ndarray:
        tf, _ = quiet_import()
        return self.fn(image=tf.constant(images.astype(np.float32)))[self.meta["output_key"]].numpy()

    def describe(self, path: str, scores: np.ndarray) -> dict[str, Any]:
        classes, task = self.meta["classes"], self.meta["task"]
        if task == "regression":
            return {"path": path, "value": float(scores[0])}
        all_scores = {c: round(float(s), 6) for c, s in zip(classes, scores)}
        if task in ("multi_label", "text_multi_label"):
            return {"path": path, "labels": [c for c, s in all_scores.items() if s >= 0.5], "scores": all_scores}
        i = int(np.argmax(scores))
        return {"path": path, "label": classes[i], "score": float(scores[i]), "scores": all_scores}

    def predict_files(self, paths: list[str], batch: int = 32) -> list[dict[str, Any]]:
        size = int(self.meta["image_size"])
        results: list[dict[str, Any]] = []
        for start in range(0, len(paths), batch):
            chunk, arrays, errors = paths[start : start + batch], [], {}
            for p in chunk:
                try:
                    arrays.append(load_rgb(p, (size, size)))
                except (ImageProblem, FileNotFoundError) as e:
                    errors[p] = str(e)
            scores = self.predict_arrays(np.stack(arrays)) if arrays else []
            it = iter(scores)
            for p in chunk:
                results.append({"path": p, "error": errors[p]} if p in errors else self.describe(p, next(it)))
        return results


def expand_inputs(inputs: list[str]) -> list[str]:
    out: list[str] = []
    for s in inputs:
        p = Path(s)
        if p.is_dir():
            out += sorted(str(f) for f in p.rglob("*") if f.suffix.lower() in IMAGE_EXTS and not f.name.startswith("."))
        elif p.is_file():
            out.append(str(p))
        else:
            raise DataError(f"{s}: no such file or folder")
    if not out:
        raise DataError(f"no images found in {', '.join(inputs)}")
    return out
