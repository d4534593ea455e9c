"""The export report: every artifact re-run on the run's validation split, in the fresh process
that checks parity (:mod:`tlapp.deploy.verify`), as a deployment would load it.

For each artifact: accuracy against the labels (single-label tasks), its difference from the
Keras model's, how often it agrees with the Keras model's answer, the largest output difference,
its file size and its latency per image on this machine. Written as ``export/report.json`` and
shown in the model card and the wizard's Export step: the quantised TFLite files are judged on
the user's own data, not on a promise.

After a training run the report is measured in the background, once the run has completed: the
checker prints its verdict, the run swaps the export in and ends, and the checker then writes
``report.json`` and the model card's report lines. Until then ``report.pending.json`` says so
(:func:`status`: running, done, failed or none).
"""

from __future__ import annotations

import html
import json
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Optional

import numpy as np

from tlapp.base.fsutil import atomic_write_text

FILE = "report.json"
PENDING = "report.pending.json"  # {"status": "running", "pid", "started"} or {"status": "failed", "error"}
STALE_S = 15 * 60  # a report still "running" after this long is reported as failed
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
    """Outputs for every input, and milliseconds per input timed after the first batch (its call
    warms the artifact up; with one batch only, that batch is timed a second time)."""
    first = fn(inputs[:batch])
    rest = inputs[batch:] if len(inputs) > batch else inputs[:batch]
    t0 = time.perf_counter()
    timed = [fn(rest[i : i + batch]) for i in range(0, len(rest), batch)]
    ms = (time.perf_counter() - t0) * 1000 / max(len(rest), 1)
    return np.concatenate([first, *timed]) if len(inputs) > batch else first, ms


@dataclass
class Artifact:
    """One exported file, loaded as a deployment would load it: ``run(batch) -> outputs``."""

    run: Callable[[np.ndarray], np.ndarray]
    batch: int  # the batch it is timed at (TFLite interpreters take one image)
    path: Path
    loaded: Any = None  # a SavedModel's loaded object (the check calls its other signatures), or a Keras model
    size_bytes: int = -1  # measured when loaded: a background report runs after the folder has moved

    def __post_init__(self) -> None:
        if self.size_bytes < 0:
            self.size_bytes = _size(self.path)


def _keras_call(tf: Any, model: Any) -> Callable[[np.ndarray], np.ndarray]:
    """``model(batch)`` traced once for any batch size (``predict_on_batch`` traced again for each new
    one: 2.5 s each for EfficientNet-Lite0 on 2 cores, three times per check)."""
    fn = tf.function(lambda x: model(x, training=False), input_signature=[tf.TensorSpec((None, None, None, 3))])
    return lambda b: fn(tf.constant(b, tf.float32)).numpy()


def artifact_names() -> list[str]:
    """Every file or folder an image export may hold that runs a model, in the order they are checked."""
    from tlapp.deploy import onnx_export
    from tlapp.deploy.tflite import FILES

    return ["model.keras", "saved_model", "model.h5", onnx_export.FILE, *FILES.values()]


def load_image_artifacts(
    tf: Any, keras: Any, export_dir: Path, key: str, names: Optional[list[str]] = None
) -> dict[str, Artifact]:
    """The image artifacts ``names`` (None: every one present) of ``export_dir``, each loaded once:
    the parity check and the report both run these (loading them twice cost 5 s of the export's
    fixed cost)."""
    import tlapp.model.image_model  # noqa: F401  registers tlapp's custom layers
    from tlapp.base.tfenv import quiet_keras_hub
    from tlapp.deploy import onnx_export
    from tlapp.deploy.tflite import FILES, Runner

    quiet_keras_hub()
    wanted = set(names if names is not None else artifact_names())
    out: dict[str, Artifact] = {}
    if "model.keras" in wanted and (export_dir / "model.keras").is_file():
        m = keras.saving.load_model(export_dir / "model.keras", compile=False, safe_mode=True)
        out["model.keras"] = Artifact(_keras_call(tf, m), 32, export_dir / "model.keras", m)
    if "saved_model" in wanted and (export_dir / "saved_model").is_dir():
        sm = tf.saved_model.load(str(export_dir / "saved_model"))
        out["saved_model"] = Artifact(
            lambda b: sm.signatures["serving_default"](image=tf.constant(b.astype(np.float32)))[key].numpy(),
            32,
            export_dir / "saved_model",
            sm,
        )
    if "model.h5" in wanted and (export_dir / "model.h5").is_file():
        h5 = keras.saving.load_model(export_dir / "model.h5", compile=False)
        out["model.h5"] = Artifact(_keras_call(tf, h5), 32, export_dir / "model.h5", h5)
    if onnx_export.FILE in wanted and (export_dir / onnx_export.FILE).is_file():
        out[onnx_export.FILE] = Artifact(
            onnx_export.runner(export_dir / onnx_export.FILE), 32, export_dir / onnx_export.FILE
        )
    for name in FILES.values():
        if name in wanted and (export_dir / name).is_file():
            runner = Runner(export_dir / name)
            out[name] = Artifact(lambda b, r=runner: np.stack([r(img) for img in b]), 1, export_dir / name)
    return out


def image_report(
    export_dir: Path, meta: dict[str, Any], artifacts: dict[str, Artifact], limit: int = MAX_EXAMPLES
) -> Optional[dict[str, Any]]:
    """The report for an image model's export (None without a validation split beside it)."""
    from tlapp.data.imageio import ImageProblem, load_rgb

    split, rows = _examples(export_dir, limit)
    size, classes, task = int(meta["image_size"]), meta["classes"], meta["task"]
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
    outputs, timing = {}, {}
    for name, a in artifacts.items():
        outputs[name], timing[name] = _run(a.run, x, a.batch)
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
            "size_bytes": artifacts[name].size_bytes,
            "ms_per_image": round(timing[name], 3),
            "batch": artifacts[name].batch,
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


def pending_line() -> str:
    """The model card's line while the report is measured (:func:`deliver` replaces it)."""
    return (
        "Export report: each file is being re-run on the held-out examples in the background; "
        f"it lands in `export/{FILE}` and here."
    )


def mark_pending(export_dir: Path, pid: int) -> None:
    atomic_write_text(export_dir / PENDING, json.dumps({"status": "running", "pid": pid, "started": time.time()}))


def deliver(export_dir: Path, report: Optional[dict[str, Any]], error: Optional[str] = None) -> None:
    """The background report's end: ``report.json`` and the model card's lines, or the failure. Only
    into the export it measured: one that replaced it meanwhile (a re-export) has its own report."""
    export_dir = Path(export_dir)
    try:
        if json.loads((export_dir / PENDING).read_text()).get("pid") != os.getpid():
            return
    except (OSError, ValueError):
        return
    if error:
        atomic_write_text(export_dir / PENDING, json.dumps({"status": "failed", "error": error}))
        return
    if report:
        atomic_write_text(export_dir / FILE, json.dumps(report, indent=1))
    # The pending line becomes the report's lines, or goes when nothing was held out to re-run on: in the
    # model card, and in report.html, which shows the card as it was when the run ended.
    lines = "\n".join(summary(report)) if report else ""
    gone = "" if report else "\n"
    for name, esc in (("model_card.md", str), ("report.html", html.escape)):
        page = export_dir.parent / name
        text = page.read_text(encoding="utf-8") if page.is_file() else ""
        if esc(pending_line()) in text:
            atomic_write_text(page, text.replace(esc(pending_line()) + gone, esc(lines)))
    (export_dir / PENDING).unlink(missing_ok=True)


def _alive(pid: int) -> bool:
    if os.name != "posix":
        return True  # no cheap portable test: the age limit decides
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def status(export_dir: Path) -> dict[str, Any]:
    """``{"status": "done", "report": {...}}``, ``"running"`` (with ``"seconds"`` so far), ``"failed"``
    (with ``"error"``) or ``"none"`` (no report: nothing held out, or an export from before reports)."""
    export_dir = Path(export_dir)
    try:
        pending = json.loads((export_dir / PENDING).read_text())
    except (OSError, ValueError):
        pending = None
    if pending is None:
        try:
            return {"status": "done", "report": json.loads((export_dir / FILE).read_text())}
        except (OSError, ValueError):
            return {"status": "none"}
    if pending.get("status") == "failed":
        return {"status": "failed", "error": pending.get("error", "unknown")}
    age = time.time() - float(pending.get("started", 0))
    if age > STALE_S or not _alive(int(pending.get("pid", 0))):
        return {"status": "failed", "error": f"its process ended without writing {FILE}"}
    return {"status": "running", "seconds": round(age, 1)}


def wait(export_dir: Path, timeout: float = 300) -> dict[str, Any]:
    """:func:`status` once it is no longer running (or ``timeout`` seconds have passed)."""
    end = time.time() + timeout
    while (st := status(export_dir))["status"] == "running" and time.time() < end:
        time.sleep(0.2)
    return st


def status_lines(st: dict[str, Any]) -> list[str]:
    """The report's lines for the wizard, whatever its :func:`status`."""
    if st["status"] == "done":
        return summary(st["report"])
    if st["status"] == "running":
        return [
            f"Export report: measuring each file on the held-out examples in the background ({st['seconds']:.0f} s)…"
        ]
    if st["status"] == "failed":
        return [f"Export report failed: {st['error']}"]
    return []
