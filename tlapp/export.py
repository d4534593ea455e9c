"""Export: SavedModel (raw-pixel and encoded-bytes signatures), ``.keras``,
optional legacy ``.h5``, ``labels.txt`` and ``meta.json`` — written into a temp
folder and swapped into ``export/``, then reloaded in a fresh process and
checked against the in-app model.
"""
from __future__ import annotations

import io
import json
import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any, Optional

import numpy as np

from .errors import ExportError
from .fsutil import atomic_dir
from .tfenv import quiet_import

if TYPE_CHECKING:
    from .training import _Run

tf, keras = quiet_import()


def output_key(task: str) -> str:
    return "values" if task == "regression" else "probabilities"


def write_saved_model(model: Any, folder: Path, size: int, key: str) -> None:
    """Signatures: ``serving_default`` (float32 pixels), ``serving_uint8``, ``serving_bytes`` (JPEG/PNG/...)."""
    archive = keras.export.ExportArchive()
    archive.track(model)

    def pixels(image):
        return {key: model(image, training=False)}

    def pixels_u8(image):
        return {key: model(tf.cast(image, tf.float32), training=False)}

    def encoded(image_bytes):
        def one(b):
            img = tf.io.decode_image(b, channels=3, expand_animations=False)
            img = tf.image.resize(tf.cast(img, tf.float32), (size, size))
            return img
        imgs = tf.map_fn(one, image_bytes, fn_output_signature=tf.TensorSpec((size, size, 3), tf.float32))
        return {key: model(imgs, training=False)}

    archive.add_endpoint("serving_default", pixels, input_signature=[tf.TensorSpec((None, None, None, 3), tf.float32, name="image")])
    archive.add_endpoint("serving_uint8", pixels_u8, input_signature=[tf.TensorSpec((None, None, None, 3), tf.uint8, name="image")])
    archive.add_endpoint("serving_bytes", encoded, input_signature=[tf.TensorSpec((None,), tf.string, name="image_bytes")])
    archive.write_out(str(folder), verbose=False)


def _png_bytes(arr: np.ndarray) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(arr.astype(np.uint8)).save(buf, format="PNG")
    return buf.getvalue()


def _write_backbone_config(backbone: Any, path: Path) -> None:
    """keras-hub's preset loader needs the backbone's config.json (not its weights) to pick the
    preprocessor class; the weights already live in model.keras."""
    def strip(d: Any) -> None:
        if isinstance(d, dict):
            for k in ("compile_config", "build_config"):
                d.pop(k, None)
            for v in d.values():
                strip(v)

    cfg = keras.saving.serialize_keras_object(backbone)
    strip(cfg)
    path.write_text(json.dumps(cfg, indent=2))


def export_model(model: Any, out_dir: Path, *, size: int, task: str, classes: list[str], formats: list[str],
                 backbone: str, samples: Optional[np.ndarray] = None, verify: bool = True,
                 token_model: Any = None, preprocessor: Any = None, backbone_model: Any = None) -> dict[str, Any]:
    """Write all requested formats to ``out_dir`` atomically; verify in a fresh process.

    ``size`` is the image size, or the sequence length for text tasks."""
    key = output_key(task)
    text = task.startswith("text_")
    meta = {"input": "text" if text else "image", "task": task, "classes": classes, "backbone": backbone,
            "output_key": key}
    if text:
        meta.update(sequence_length=size, signatures={"serving_default": "text string [N] (raw, untokenised)"})
    else:
        meta.update(image_size=size, signatures={"serving_default": "image float32 [N,H,W,3] 0-255",
                                                 "serving_uint8": "image uint8 [N,H,W,3]",
                                                 "serving_bytes": "image_bytes string [N]"})
    errors: dict[str, str] = {}
    for m in (model, token_model):
        if m is not None:
            m.compile(loss="mse")  # drop the training optimizer (it may be a non-serialisable subclass)
    with atomic_dir(out_dir) as tmp:
        (tmp / "labels.txt").write_text("".join(f"{c}\n" for c in classes))
        if "savedmodel" in formats and text:
            from .text_model import write_text_saved_model

            write_text_saved_model(model, tmp / "saved_model", key)
        elif "savedmodel" in formats:
            write_saved_model(model, tmp / "saved_model", size, key)
        if "keras" in formats and text:
            # Token-id model + tokenizer preset: see tlapp.text_model.build_text_model.
            token_model.save(tmp / "model.keras")
            preprocessor.save_to_preset(str(tmp / "preprocessor"))
            _write_backbone_config(backbone_model, tmp / "preprocessor" / "config.json")
        elif "keras" in formats:
            model.save(tmp / "model.keras")
        if "h5" in formats:
            try:
                model.save(tmp / "model.h5")
            except Exception as e:  # legacy format cannot hold every layer type
                errors["h5"] = f"{type(e).__name__}: {str(e).splitlines()[0][:200]}"
        if samples is not None and len(samples) and text:
            expected = np.asarray(model.predict_on_batch(tf.constant(list(samples), dtype=tf.string)))
            np.savez(tmp / "parity_samples.npz", texts=np.array(list(samples), dtype=object), expected=expected)
        elif samples is not None and len(samples):
            expected = np.asarray(model.predict_on_batch(samples.astype(np.float32)))
            np.savez(tmp / "parity_samples.npz", images=samples.astype(np.uint8), expected=expected,
                     png=np.array([_png_bytes(s) for s in samples], dtype=object))
        (tmp / "meta.json").write_text(json.dumps(meta, indent=2))
    info: dict[str, Any] = {"dir": str(out_dir), "formats": formats, "errors": errors, "verified": None}
    if verify and samples is not None and len(samples):
        info["verify"] = verify_in_fresh_process(out_dir)
        info["verified"] = info["verify"]["ok"]
    return info


def verify_in_fresh_process(export_dir: Path, timeout: float = 600) -> dict[str, Any]:
    """Reload every artifact in a new Python process and compare with the saved expectations."""
    cmd = [sys.executable, "-m", "tlapp.verify", str(export_dir)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    lines = [l for l in proc.stdout.splitlines() if l.startswith("{")]
    if proc.returncode != 0 or not lines:
        raise ExportError(f"{export_dir}: parity check process failed: {(proc.stderr or proc.stdout)[-400:]}")
    return json.loads(lines[-1])


def export_run(run: "_Run") -> dict[str, Any]:
    """Export a finished run and record the parity check."""
    from .data import image_dataset

    p = run.project
    samples = None
    pool = run.splits.val or run.splits.train
    if pool and p.task.type.is_text:
        from .text_model import sample_texts

        samples = sample_texts(pool, p.export.verify_samples)
    elif pool:
        n = min(p.export.verify_samples, len(pool))
        ds = image_dataset(pool[:n], run.encoder, run.asm.backbone.size, n, with_labels=False, cache="none")
        samples = next(iter(ds)).numpy()
    info = export_model(run.asm.model, run.run_dir / "export", size=run.asm.backbone.size, task=p.task.type.value,
                        classes=run.classes, formats=list(p.export.formats), backbone=p.backbone.name,
                        samples=samples, verify=p.export.verify,
                        token_model=getattr(run.asm, "token_model", None),
                        preprocessor=getattr(run.asm.backbone, "preprocessor", None),
                        backbone_model=run.asm.backbone.model)
    run.log.emit("export", **{k: v for k, v in info.items() if k != "verify"})
    if info.get("verify"):
        run.log.emit("verify", **info["verify"])
        if not info["verify"]["ok"]:
            raise ExportError(f"export parity check failed: {info['verify']['summary']}")
    return info
