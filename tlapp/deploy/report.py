"""The export report: every artifact re-run on the run's validation split, in the fresh process
that checks parity (:mod:`tlapp.deploy.verify`), as a deployment would load it.

For each artifact: accuracy against the labels (single-label tasks), its difference from the
Keras model's, how often it agrees with the Keras model's answer, the largest output difference,
its file size and its latency per image on this machine. Written as ``export/report.json`` and
shown in the model card and the wizard's Export step: the quantised TFLite files are judged on
the user's own data, not on a promise.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any, Callable, Optional

import numpy as np

MAX_EXAMPLES = 200  # validation examples re-run per artifact (the int8 delta needs a few hundred at most)


def _examples(export_dir: Path, limit: int) -> tuple[str, list[list[Any]]]:
    """The held-out examples beside the export: the test split when there is one (never trained on),
    else validation."""
    split = export_dir.parent / "split.json"
    if not split.is_file():
        return "", []
    rows = json.loads(split.read_text())
    name = "test" if rows.get("test") else "val"
    return name, (rows.get(name) or [])[:limit]


def _size(path: Path) -> int:
    if path.is_dir():
        return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())
    return path.stat().st_size if path.exists() else 0


def _run(fn: Callable[[np.ndarray], np.ndarray], inputs: np.ndarray, batch: int) -> tuple[np.ndarray, float]:
    """Outputs for every input, and milliseconds per input (after one warm-up call)."""
    fn(inputs[:batch])
    t0 = time.perf_counter()
    out = np.concatenate([fn(inputs[i : i + batch]) for i in range(0, len(inputs), batch)])
    return out, (time.perf_counter() - t0) * 1000 / max(len(inputs), 1)


def image_report(
    tf: Any, keras: Any, export_dir: Path, meta: dict[str, Any], limit: int = MAX_EXAMPLES
) -> Optional[dict[str, Any]]:
    """The report for an image model's export (None without a validation split beside it)."""
    from tlapp.data.imageio import ImageProblem, load_rgb
    from tlapp.deploy import onnx_export
    from tlapp.deploy.tflite import FILES, Runner

    split, rows = _examples(export_dir, limit)
    size, key, classes, task = int(meta["image_size"]), meta["output_key"], meta["classes"], meta["task"]
    images, labels = [], []
    for path, label, *_ in rows:
        try:
            images.append(load_rgb(path, (size, size)))  # training's own decode
            labels.append(label)
        except (ImageProblem, OSError):
            continue
    if not images:
        return None
    x = np.stack(images)
    artifacts: dict[str, tuple[Callable[[np.ndarray], np.ndarray], int, Path]] = {}
    if (export_dir / "model.keras").is_file():
        m = keras.saving.load_model(export_dir / "model.keras", compile=False, safe_mode=True)
        artifacts["model.keras"] = (
            lambda b: np.asarray(m.predict_on_batch(b.astype(np.float32))),
            32,
            export_dir / "model.keras",
        )
    if (export_dir / "saved_model").is_dir():
        sig = tf.saved_model.load(str(export_dir / "saved_model")).signatures["serving_default"]
        artifacts["saved_model"] = (
            lambda b: sig(image=tf.constant(b.astype(np.float32)))[key].numpy(),
            32,
            export_dir / "saved_model",
        )
    if (export_dir / "model.h5").is_file():
        h5 = keras.saving.load_model(export_dir / "model.h5", compile=False)
        artifacts["model.h5"] = (
            lambda b: np.asarray(h5.predict_on_batch(b.astype(np.float32))),
            32,
            export_dir / "model.h5",
        )
    if (export_dir / onnx_export.FILE).is_file():
        artifacts[onnx_export.FILE] = (
            onnx_export.runner(export_dir / onnx_export.FILE),
            32,
            export_dir / onnx_export.FILE,
        )
    for fmt, name in FILES.items():
        if (export_dir / name).is_file():
            runner = Runner(export_dir / name)
            artifacts[name] = (lambda b, r=runner: np.stack([r(img) for img in b]), 1, export_dir / name)
    outputs, timing = {}, {}
    for name, (fn, batch, _) in artifacts.items():
        outputs[name], timing[name] = _run(fn, x, batch)
    ref_name = "model.keras" if "model.keras" in outputs else next(iter(outputs), None)
    if ref_name is None:
        return None
    ref = outputs[ref_name]
    truth = (
        np.array([classes.index(lab) if lab in classes else -1 for lab in labels])
        if task in ("image_classification",)
        else None
    )
    out: dict[str, Any] = {
        "n": len(x),
        "split": split,
        "reference": ref_name,
        "artifacts": {},
        # The recipe's refit trains the final model on validation too: its accuracy there
        # is then a training score; the artifacts' agreement and accuracy change still hold.
        "seen_in_training": split == "val" and bool(meta.get("validation_seen_in_training")),
    }
    for name, y in outputs.items():
        row: dict[str, Any] = {
            "max_abs_diff": float(np.abs(y - ref).max()),
            "size_bytes": _size(artifacts[name][2]),
            "ms_per_image": round(timing[name], 3),
            "batch": artifacts[name][1],
        }
        if y.shape[-1] > 1:
            row["agreement"] = float((y.argmax(-1) == ref.argmax(-1)).mean())
        if truth is not None:
            row["accuracy"] = float((y.argmax(-1) == truth).mean())
            row["accuracy_delta"] = row["accuracy"] - float((ref.argmax(-1) == truth).mean())
        out["artifacts"][name] = row
    return out


def summary(report: Optional[dict[str, Any]]) -> list[str]:
    """One line per artifact (model card, CLI, wizard)."""
    if not report:
        return []
    where = {"test": "test", "val": "validation"}.get(report.get("split", "val"), "validation")
    lines = [
        f"Re-run on {report['n']} {where} examples in a fresh process (reference: {report['reference']})"
        + (
            " — the final model was refit on these examples, so read the accuracy change and agreement, "
            "not the accuracy itself:"
            if report.get("seen_in_training")
            else ":"
        )
    ]
    for name, r in report["artifacts"].items():
        acc = f"accuracy {r['accuracy']:.4f} ({r['accuracy_delta']:+.4f}), " if "accuracy" in r else ""
        agree = f"agrees {r['agreement']:.1%}, " if "agreement" in r else ""
        lines.append(
            f"- {name}: {acc}{agree}max diff {r['max_abs_diff']:.1e}, {r['size_bytes'] / 2**20:.1f} MB, "
            f"{r['ms_per_image']:.1f} ms/image (batch {r['batch']})"
        )
    return lines
