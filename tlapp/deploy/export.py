"""Export: SavedModel (raw-pixel and encoded-bytes signatures), ``.keras``,
optional legacy ``.h5``, ``labels.txt`` and ``meta.json`` — written into a temp
folder, each file reloaded in a fresh process and checked against the in-app
model as soon as it is written (while the next one is being written), then
swapped into ``export/``.
"""

from __future__ import annotations

import io
import json
import os
import queue
import shutil
import subprocess
import sys
import threading
import time
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Optional

import numpy as np

from tlapp.base.errors import Cancelled, ExportError
from tlapp.base.fsutil import atomic_dir, atomic_write_text
from tlapp.base.tfenv import quiet_import
from tlapp.deploy import onnx_export, tflite
from tlapp.deploy.samples import FILE as SAMPLES_FILE
from tlapp.deploy.samples import write_samples
from tlapp.deploy.tflite import FILES as TFLITE_FILES

tf, keras = quiet_import()


def output_key(task: str) -> str:
    return "values" if task == "regression" else "probabilities"


def _u16(b: Any, little: Any) -> Any:
    """Unsigned 16-bit integers from uint8 pairs ``b[..., 2]`` in either byte order."""
    b = tf.cast(b, tf.int32)
    return tf.where(little, b[..., 0] + 256 * b[..., 1], 256 * b[..., 0] + b[..., 1])


def exif_orientation(image_bytes: Any) -> Any:
    """The EXIF orientation (1-8) of a JPEG, read with TensorFlow string ops; 1 when there is none.

    Reads the APP1 "Exif" block's TIFF header (byte order), IFD0's entry count and the
    entries' tags, and returns tag 0x0112's value — what Pillow's ``exif_transpose`` reads.
    """
    head = tf.strings.substr(image_bytes, 0, 65536)
    parts = tf.strings.split(head, "Exif\x00\x00", maxsplit=1)
    is_jpeg = tf.equal(tf.strings.substr(head, 0, 2), b"\xff\xd8")

    def read() -> Any:
        tiff = tf.strings.substr(head, tf.strings.length(parts[0]) + 6, 65536)
        raw = tf.io.decode_raw(tiff, tf.uint8)
        n_raw = tf.shape(raw)[0]
        little = tf.equal(tf.strings.substr(tiff, 0, 2), b"II")
        at = lambda i, k: tf.gather(raw, tf.clip_by_value(i + tf.range(k), 0, tf.maximum(n_raw - 1, 0)))  # noqa: E731
        ifd = _u16(at(4, 2), little) + 65536 * _u16(at(6, 2), little)
        ifd = tf.where(little, ifd, _u16(at(6, 2), little) + 65536 * _u16(at(4, 2), little))
        count = tf.minimum(_u16(at(ifd, 2), little), 64)
        entries = tf.reshape(at(ifd + 2, count * 12), (-1, 12))
        tags = _u16(entries[:, 0:2], little)
        hit = tf.where(tf.equal(tags, 0x0112))[:, 0]
        value = tf.cond(tf.size(hit) > 0, lambda: _u16(entries[hit[0], 8:10], little), lambda: tf.constant(1))
        ok = tf.logical_and(n_raw > 16, tf.logical_and(value >= 1, value <= 8))
        return tf.where(ok, value, 1)

    return tf.cond(tf.logical_and(is_jpeg, tf.size(parts) > 1), read, lambda: tf.constant(1))


def apply_orientation(img: Any, orientation: Any) -> Any:
    """Turn ``img`` upright for EXIF ``orientation``, as Pillow's ``ImageOps.exif_transpose``."""
    t = lambda x: tf.transpose(x, [1, 0, 2])  # noqa: E731
    branches = [
        lambda: img,  # 1 upright
        lambda: tf.reverse(img, [1]),  # 2 mirrored left-right
        lambda: tf.reverse(img, [0, 1]),  # 3 rotated 180
        lambda: tf.reverse(img, [0]),  # 4 mirrored top-bottom
        lambda: t(img),  # 5 transposed
        lambda: tf.reverse(t(img), [1]),  # 6 rotated 90 clockwise
        lambda: tf.reverse(t(img), [0, 1]),  # 7 transverse
        lambda: tf.reverse(t(img), [0]),
    ]  # 8 rotated 90 counter-clockwise
    return tf.switch_case(tf.clip_by_value(orientation - 1, 0, 7), branches)


def decode_like_training(image_bytes: Any, size: int) -> Any:
    """Encoded image -> float32 ``[size, size, 3]`` in 0..255 by the rule training uses
    (:mod:`tlapp.data.imageio`): EXIF orientation applied, grey replicated to RGB, 16-bit
    scaled, transparency composited on white, the first frame of an animation, then an
    antialiased bilinear resize as Pillow's and rounding to whole levels. Measured against
    training's decoder: at most 3 levels apart (JPEG decoders differ), mean under 1
    (tests/test_faults.py)."""
    img = tf.cast(tf.io.decode_image(image_bytes, expand_animations=False), tf.float32)
    img = apply_orientation(img, exif_orientation(image_bytes))
    channels = tf.shape(img)[-1]
    color = tf.cond(channels >= 3, lambda: img[..., :3], lambda: tf.tile(img[..., :1], [1, 1, 3]))
    alpha = tf.cond(tf.equal(channels % 2, 0), lambda: img[..., -1:] / 255.0, lambda: tf.ones_like(img[..., :1]))
    rgb = tf.round(color * alpha + 255.0 * (1.0 - alpha))
    out = tf.image.resize(rgb, (size, size), method="bilinear", antialias=True)
    return tf.clip_by_value(tf.round(out), 0.0, 255.0)


def resize_like_training(images: Any, size: int) -> Any:
    """Pixels of another size brought to ``size`` as training's decoder does (Pillow's antialiased
    bilinear, whole levels); pixels already at ``size`` pass untouched. The model's own Resizing
    layer is plain bilinear (TensorFlow Lite has no antialiased resize), so the signatures do this
    first: a 1000-pixel photo then gets the pixels training would have made of it."""
    shape = tf.shape(images)
    same = tf.logical_and(tf.equal(shape[1], size), tf.equal(shape[2], size))
    return tf.cond(
        same,
        lambda: images,
        lambda: tf.clip_by_value(
            tf.round(tf.image.resize(images, (size, size), method="bilinear", antialias=True)), 0.0, 255.0
        ),
    )


MAX_CONSTANT_BYTES = 1 << 30  # a GraphDef stops at 2 GiB: larger weights stay variables


def inference_fn(model: Any) -> tuple[Callable[[Any], Any], bool]:
    """``model(x, training=False)`` to trace into a SavedModel, and whether its weights are graph constants.

    Constants when they fit (under :data:`MAX_CONSTANT_BYTES`): a SavedModel without variables
    writes no checkpoint and traces no save/restore function per variable, which was 6.7 s of the
    7.9 s that EfficientNet-Lite0's bare SavedModel took on 2 cores; it also loads in 1.1 s instead
    of 2.7 s, and grappler folds the batch norms into the convolutions
    (``benchmarks/results/export_cost.json``). Serving is the same; to train on, ``model.keras``
    holds the variables. Larger models keep theirs."""
    nbytes = sum(int(np.prod(v.shape)) * np.dtype(v.dtype).itemsize for v in model.variables)
    if nbytes > MAX_CONSTANT_BYTES:
        return (lambda x: model(x, training=False)), False
    trainable = [np.asarray(v) for v in model.trainable_variables]
    frozen = [np.asarray(v) for v in model.non_trainable_variables]

    def forward(x: Any) -> Any:
        consts = lambda arrays: [tf.constant(a) for a in arrays]  # noqa: E731
        return model.stateless_call(consts(trainable), consts(frozen), x, training=False)[0]

    return forward, True


def write_saved_model(model: Any, folder: Path, size: int, key: str) -> None:
    """Signatures: ``serving_default`` (float32 pixels), ``serving_uint8``, ``serving_bytes`` (JPEG/PNG/...).

    Written with ``tf.saved_model.save`` on a bare ``tf.Module``, the signatures handed over as
    concrete functions that call one traced function of the model (:func:`inference_fn`). Keras's
    ``ExportArchive`` walks every layer of a tracked model for lookup tables, and traces the
    functions kept as attributes again under the save context: EfficientNet-Lite0 on 2 CPU cores
    took 15.3 s that way. An image model holds no lookup tables (for a text model that does, see
    :func:`write_text_saved_model`).
    """
    forward, constant = inference_fn(model)
    spec = tf.TensorSpec((None, None, None, 3), tf.float32)
    core = tf.function(forward, input_signature=[spec], autograph=False)

    def pixels(image):
        return {key: core(resize_like_training(image, size))}

    def pixels_u8(image):
        return {key: core(resize_like_training(tf.cast(image, tf.float32), size))}

    def encoded(image_bytes):
        imgs = tf.map_fn(
            lambda b: decode_like_training(b, size),
            image_bytes,
            fn_output_signature=tf.TensorSpec((size, size, 3), tf.float32),
        )
        return {key: core(imgs)}

    signatures = {
        name: tf.function(fn, input_signature=[sig], autograph=False).get_concrete_function()
        for name, fn, sig in (
            ("serving_default", pixels, tf.TensorSpec((None, None, None, 3), tf.float32, name="image")),
            ("serving_uint8", pixels_u8, tf.TensorSpec((None, None, None, 3), tf.uint8, name="image")),
            ("serving_bytes", encoded, tf.TensorSpec((None,), tf.string, name="image_bytes")),
        )
    }
    _save_bare(model, Path(folder), signatures, constant)


def _save_bare(model: Any, folder: Path, signatures: dict[str, Any], constant: bool) -> None:
    """A SavedModel of these concrete-function signatures and, unless its weights are constants in
    them, ``model``'s variables; nothing else."""
    root = tf.Module()
    if not constant:
        root.model_variables = list(model.variables)
    tf.saved_model.save(root, str(folder), signatures=signatures)


def write_text_saved_model(model: Any, folder: Any, key: str) -> None:
    """``serving_default`` on raw strings. Saved bare as :func:`write_saved_model` (MiniLM-L6 on 2 cores:
    12.1 s with Keras's ``ExportArchive``, 3.5 s bare with variables); a model that holds a lookup table
    (a resource the bare module does not track, which TensorFlow refuses to save) goes through the
    archive, which walks the model's layers for such tables (tests/test_export_check.py saves a
    ``StringLookup`` model)."""
    spec = tf.TensorSpec((None,), tf.string, name="text")
    forward, constant = inference_fn(model)
    serve = tf.function(lambda text: {key: forward(text)}, input_signature=[spec], autograph=False)
    try:
        _save_bare(model, Path(folder), {"serving_default": serve.get_concrete_function()}, constant)
        return
    except AssertionError as e:  # "Tried to export a function which references an 'untracked' resource"
        if "untracked" not in str(e):
            raise
        shutil.rmtree(folder, ignore_errors=True)
    archive = keras.export.ExportArchive()
    archive.track(model)
    archive.add_endpoint("serving_default", lambda text: {key: model(text, training=False)}, input_signature=[spec])
    archive.write_out(str(folder), verbose=False)


def _png_bytes(arr: np.ndarray) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(arr.astype(np.uint8)).save(buf, format="PNG")
    return buf.getvalue()


@dataclass
class ExportParts:
    """What an export needs, as plain data: the trainer and ``tlapp export RUN`` both build one.

    ``model`` takes raw inputs (pixels or strings). Text exports also carry
    ``token_model`` (saved as ``model.keras``), the keras-hub ``preprocessor``
    and the backbone's config (keras-hub's preset loader needs it to pick the
    preprocessor class; the weights already live in ``model.keras``).
    """

    model: Any
    task: str
    classes: list[str]
    size: int  # image size, or sequence length for text
    backbone: str
    token_model: Any = None
    preprocessor: Any = None
    backbone_config: Optional[dict[str, Any]] = None
    representative: Optional[np.ndarray] = None  # uint8 training images: int8 TFLite calibrates on them
    validation_seen: bool = False  # the final model was refit on train + validation (the recipe's refit)

    @property
    def is_text(self) -> bool:
        return self.task.startswith("text_")


def backbone_config(backbone: Any) -> dict[str, Any]:
    """A keras-hub backbone's config without compile/build state (see :class:`ExportParts`)."""

    def strip(d: Any) -> None:
        if isinstance(d, dict):
            for k in ("compile_config", "build_config"):
                d.pop(k, None)
            for v in d.values():
                strip(v)

    cfg = keras.saving.serialize_keras_object(backbone)
    strip(cfg)
    return cfg


def _meta(parts: ExportParts) -> dict[str, Any]:
    meta = {
        "input": "text" if parts.is_text else "image",
        "task": parts.task,
        "classes": parts.classes,
        "backbone": parts.backbone,
        "output_key": output_key(parts.task),
        "validation_seen_in_training": parts.validation_seen,
    }
    if parts.is_text:
        meta.update(sequence_length=parts.size, signatures={"serving_default": "text string [N] (raw, untokenised)"})
    else:
        meta.update(
            image_size=parts.size,
            signatures={
                "serving_default": "image float32 [N,H,W,3] 0-255",
                "serving_uint8": "image uint8 [N,H,W,3]",
                "serving_bytes": "image_bytes string [N]",
            },
        )
    return meta


def usage_readme(meta: dict[str, Any], formats: list[str]) -> str:
    """The export folder's README: how to call each file it holds, without tlapp."""
    key, text = meta["output_key"], meta["input"] == "text"
    size = meta.get("image_size")
    parts = [
        f"# {meta['backbone']} — {meta['task']}",
        "",
        "Classes, in output order, are in `labels.txt`. "
        + (
            "Inputs are raw strings: the tokenizer is inside the model."
            if text
            else f"Inputs are raw RGB pixels 0-255: resizing to {size}x{size} and the backbone's scaling are inside "
            "the model."
        ),
        "",
    ]
    if "savedmodel" in formats:
        call = (
            'sig(text=tf.constant(["some text"]))'
            if text
            else 'sig(image=tf.constant(pixels[None].astype("float32")))  # pixels: [H, W, 3] uint8, any size'
        )
        parts += [
            "## SavedModel (`saved_model/`)",
            "",
            "```python",
            "import tensorflow as tf" + ("\nimport tensorflow_text  # registers the tokenizer ops" if text else ""),
            'sig = tf.saved_model.load("saved_model").signatures["serving_default"]',
            f'out = {call}["{key}"]',
            "```",
            "",
            "Its weights are constants in the graph when under 1 GiB (serving is the same either way); to train "
            "on, load `model.keras`.",
            "",
        ]
        if not text:
            parts += [
                "Other signatures: `serving_uint8` (uint8 pixels) and `serving_bytes` (encoded JPEG/PNG "
                "strings, `image_bytes`; EXIF rotation and transparency are handled as in training). Pixels "
                "of another size are resized as training resizes (antialiased) before the model.",
                "",
            ]
    if "keras" in formats:
        parts += [
            "## Keras (`model.keras`)",
            "",
            "```python",
            "import keras",
            'model = keras.saving.load_model("model.keras", compile=False)',
            (
                "# text: tokens from preprocessor/ (keras_hub.models.TextClassifierPreprocessor.from_preset)"
                if text
                else 'out = model.predict(pixels[None].astype("float32"))'
            ),
            "```",
            "",
        ]
    if "onnx" in formats:
        parts += [
            "## ONNX (`model.onnx`)",
            "",
            "```python",
            "import numpy as np, onnxruntime as ort",
            'sess = ort.InferenceSession("model.onnx")',
            f'out = sess.run(None, {{"image": pixels[None].astype("float32")}})[0]  # [N, {size}, {size}, 3]',
            "```",
            "",
        ]
    if "h5" in formats:
        parts += ["## Legacy HDF5 (`model.h5`)", "", '`keras.saving.load_model("model.h5", compile=False)`', ""]
    lite = meta.get("tflite") or {}
    if lite:
        parts += ["## TensorFlow Lite", "", "| file | input |", "|---|---|"]
        parts += [f"| `{name}` | {spec} |" for name, spec in lite.items()]
        parts += [
            "",
            "```python",
            "import numpy as np, tensorflow as tf  # or: from ai_edge_litert.interpreter import Interpreter",
            'it = tf.lite.Interpreter(model_path="model.tflite"); it.allocate_tensors()',
            "inp, out = it.get_input_details()[0], it.get_output_details()[0]",
            f"it.set_tensor(inp['index'], pixels[None].astype(inp['dtype']))  # [1, {size}, {size}, 3]",
            "it.invoke(); y = it.get_tensor(out['index'])[0]",
            "# int8: y is uint8; probabilities = (y - zero_point) * scale from out['quantization']",
            "```",
            "",
            "Accuracy of each file on the validation split: `report.json`.",
            "",
        ]
    return "\n".join(parts)


def artifacts(fmt: str) -> list[str]:
    """The files/folders a format writes into an export folder."""
    return {
        "savedmodel": ["saved_model"],
        "keras": ["model.keras", "preprocessor"],
        "h5": ["model.h5"],
        "onnx": [onnx_export.FILE],
    }.get(fmt) or ([TFLITE_FILES[fmt]] if fmt in TFLITE_FILES else [])


def present_formats(folder: Path) -> list[str]:
    """The formats whose artifacts are in an export folder."""
    fmts = ("savedmodel", "keras", "h5", "tflite", "tflite_fp16", "tflite_int8", "onnx")
    return [f for f in fmts if (Path(folder) / artifacts(f)[0]).exists()]


def _carry_over(src: Path, tmp: Path, keep: list[str]) -> None:
    """Copy the artifacts of formats ``keep`` from the export being replaced (hard links where possible:
    nothing is rewritten, and the old folder is only removed once the new one is in place)."""
    for fmt in keep:
        for name in artifacts(fmt):
            path = src / name
            if path.is_dir():
                shutil.copytree(path, tmp / name, copy_function=_link_or_copy)
            elif path.is_file():
                _link_or_copy(str(path), str(tmp / name))


def _link_or_copy(a: str, b: str) -> None:
    try:
        os.link(a, b)
    except OSError:
        shutil.copy2(a, b)


def _write_formats(parts: ExportParts, tmp: Path, formats: list[str]) -> dict[str, str]:
    """Write each requested format into ``tmp``; returns {format: error} for formats that cannot hold the model."""
    key, errors = output_key(parts.task), {}
    if "savedmodel" in formats and parts.is_text:
        write_text_saved_model(parts.model, tmp / "saved_model", key)
    elif "savedmodel" in formats:
        write_saved_model(parts.model, tmp / "saved_model", parts.size, key)
    if "keras" in formats and parts.is_text:
        # Token-id model + tokenizer preset: see tlapp.model.text_model.build_text_model.
        parts.token_model.save(tmp / "model.keras")
        parts.preprocessor.save_to_preset(str(tmp / "preprocessor"))
        (tmp / "preprocessor" / "config.json").write_text(json.dumps(parts.backbone_config, indent=2))
    elif "keras" in formats:
        parts.model.save(tmp / "model.keras")
    for fmt in formats:
        if fmt in TFLITE_FILES:
            why = tflite.convert(
                parts.model, parts.size, fmt, tmp / TFLITE_FILES[fmt], parts.representative, parts.is_text
            )
            if why:
                errors[fmt] = why
    if "onnx" in formats:
        why = onnx_export.convert(parts.model, parts.size, tmp / onnx_export.FILE, parts.is_text)
        if why:
            errors["onnx"] = why
    if "gguf" in formats:
        errors["gguf"] = "GGUF holds language models (task sft); a classifier exports savedmodel, keras, tflite or onnx"
    if "h5" in formats:
        try:
            parts.model.save(tmp / "model.h5")
        except Exception as e:  # the legacy format cannot hold every layer type
            errors["h5"] = f"{type(e).__name__}: {str(e).splitlines()[0][:200]}"
    return errors


def _write_samples(parts: ExportParts, samples: np.ndarray, path: Path) -> None:
    """The parity inputs and what the in-app model answered for them."""
    if parts.is_text:
        expected = np.asarray(parts.model.predict_on_batch(tf.constant(list(samples), dtype=tf.string)))
        write_samples(path, expected, texts=[str(t) for t in samples])
    else:
        # Eagerly: 1.1 s on 8 images here, where predict_on_batch traced the model first (3.2 s).
        expected = np.asarray(parts.model(samples.astype(np.float32), training=False))
        write_samples(path, expected, images=samples, pngs=[_png_bytes(s) for s in samples])


def export_model(
    parts: ExportParts,
    out_dir: Path,
    formats: list[str],
    samples: Optional[np.ndarray] = None,
    verify: bool = True,
    verifier: Optional["FreshVerifier"] = None,
    progress: Optional[Callable[[int, int], None]] = None,
    should_stop: Optional[Callable[[], bool]] = None,
    keep_existing: bool = False,
    report_later: bool = False,
    while_checking: Optional[Callable[[], None]] = None,
) -> dict[str, Any]:
    """Write all requested formats to ``out_dir`` atomically; verify in a fresh process.

    ``keep_existing``: the formats already in ``out_dir`` that are not asked for stay (a re-export adds
    a format; it never loses the others), and the README, meta and check cover all of them.

    Pass a ``verifier`` started earlier (:meth:`FreshVerifier.start`) to overlap its
    TensorFlow import with other work; otherwise one is started here. ``progress(done, total)``
    counts the steps (each format, the samples, the check); ``should_stop`` cancels between
    steps, leaving any previous export untouched. ``while_checking`` runs once every file is
    written, while the checker finishes. ``report_later``: the export report is measured after this
    returns, in the background (:mod:`tlapp.deploy.report`); ``info["report_pending"]`` then says so.

    Example::

        info = export_model(parts, Path("runs/a/export"), ["savedmodel", "keras"], samples)
        info["verify"]["summary"]   # 'passed: 4 artifact/signature(s) on 8 inputs, ...'
    """
    from tlapp.deploy import report as export_report

    check = verify and samples is not None and len(samples) > 0
    verifier = (verifier or FreshVerifier.start()) if check else None
    t0 = time.time()
    for m in (parts.model, parts.token_model):
        if m is not None:
            m.compile(loss="mse")  # drop the training optimizer (it may be a non-serialisable subclass)
    total, done = len(formats) + 2 * bool(check), [0]

    def step() -> None:
        done[0] += 1
        if progress:
            progress(done[0], total)
        if should_stop and should_stop():
            if verifier is not None:
                verifier.cancel()
            raise Cancelled("cancelled while exporting; the previous export (if any) is untouched")

    kept = [f for f in present_formats(out_dir) if f not in formats] if keep_existing and out_dir.is_dir() else []
    with atomic_dir(out_dir) as tmp:
        (tmp / "labels.txt").write_text("".join(f"{c}\n" for c in parts.classes))
        _carry_over(Path(out_dir), tmp, kept)
        meta = _meta(parts)
        (tmp / "meta.json").write_text(json.dumps(meta, indent=2))
        errors: dict[str, str] = {}
        order = sorted(formats, key=_write_order)

        def write_samples_once() -> None:
            if check and not (tmp / SAMPLES_FILE).exists():
                _write_samples(parts, samples, tmp / SAMPLES_FILE)
                verifier.send(tmp, [a for f in kept for a in artifacts(f)], samples=True)
                step()

        # The samples (their reference outputs take a second or so) after the .keras file and the
        # SavedModel: the checker loads those meanwhile, the loads being its slowest part.
        samples_after = ([f for f in order if f in ("keras", "savedmodel")] or order)[-1:]
        for fmt in order:
            errors.update(_write_formats(parts, tmp, [fmt]))
            if verifier is not None and fmt not in errors:
                verifier.send(tmp, artifacts(fmt))  # loaded there while the next file is written here
            step()
            if fmt in samples_after:
                write_samples_once()
        write_samples_once()
        formats = sorted(set(formats) | set(kept))
        lite = {
            TFLITE_FILES[f]: ("uint8" if f == "tflite_int8" else "float32") + f" [1,{parts.size},{parts.size},3] 0-255"
            for f in formats
            if f in TFLITE_FILES and f not in errors
        }
        if lite:
            meta["tflite"] = lite
            (tmp / "meta.json").write_text(json.dumps(meta, indent=2))
        (tmp / "README.md").write_text(usage_readme(meta, [f for f in formats if f not in errors]))
        write_s = round(time.time() - t0, 2)
        if while_checking:
            while_checking()
        if verifier is not None:
            t1 = time.time()
            result = verifier.finish(tmp, report_later=report_later)
            wait_s = round(time.time() - t1, 2)
            if result.get("report_pending"):
                export_report.mark_pending(tmp, verifier.proc.pid)
    info: dict[str, Any] = {
        "dir": str(out_dir),
        "formats": formats,
        "errors": errors,
        "verified": None,
        "seconds": {"write": write_s},
    }
    if verifier is not None:
        info["verify"] = result
        info["verified"] = result["ok"]
        report = result.pop("report", None)
        if result.pop("report_pending", False):
            verifier.release(out_dir)  # swapped in: the checker writes the report there
            info["report_pending"] = True
        elif report:
            atomic_write_text(out_dir / export_report.FILE, json.dumps(report, indent=1))
            info["report"] = report
        if progress:
            progress(total, total)
        info["seconds"]["verify_wait"] = wait_s
    return info


WRITE_ORDER = ("keras", "h5", "savedmodel", "onnx")  # then the TFLite files


def _write_order(fmt: str) -> int:
    """Quick files first, so the checker has one to load while the slow ones (the SavedModel's
    tracing, TFLite conversion) are written."""
    return WRITE_ORDER.index(fmt) if fmt in WRITE_ORDER else len(WRITE_ORDER)


class FreshVerifier:
    """The parity check's own Python process, started early so its TensorFlow import overlaps
    the export; it waits on stdin for the folder to check (see :mod:`tlapp.deploy.verify`).

    Its output is read by two threads from the start, so nothing it prints can fill a pipe and
    block it, and :meth:`finish` can take the verdict without waiting for the process to end."""

    def __init__(self, proc: subprocess.Popen) -> None:
        self.proc = proc
        self.released = False
        self._lines: "queue.Queue[Optional[str]]" = queue.Queue()
        self._err: "deque[str]" = deque(maxlen=50)
        threading.Thread(target=self._read, args=(proc.stdout, self._lines.put), daemon=True).start()
        threading.Thread(target=self._read, args=(proc.stderr, self._err.append), daemon=True).start()

    @staticmethod
    def _read(stream: Any, put: Callable[[Any], None]) -> None:
        try:
            for line in stream:
                put(line)
        except (OSError, ValueError):
            pass
        put(None)

    @classmethod
    def start(cls, nice: int = 0) -> "FreshVerifier":
        """``nice``: the checker lowers its own priority by this much (it starts beside a training run)."""
        cmd = [sys.executable, "-m", "tlapp.deploy.verify", "--wait", str(nice)]
        return cls(
            subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        )

    def _tell(self, msg: dict[str, Any], close: bool = False) -> None:
        if self.proc.poll() is None:
            try:
                self.proc.stdin.write(json.dumps(msg) + "\n")
                self.proc.stdin.flush()
                if close:
                    self.proc.stdin.close()
            except (OSError, ValueError):  # it died: finish() reports why
                pass

    def send(self, export_dir: Path, names: list[str], samples: bool = False) -> None:
        """Have the checker load these artifacts of ``export_dir`` now, and compare them (and any loaded
        before) once ``samples`` says the parity samples are written; it answers at :meth:`finish`."""
        if names or samples:
            self._tell({"dir": str(export_dir), "artifacts": names, "samples": samples})

    def finish(self, export_dir: Path, timeout: float = 600, report_later: bool = False) -> dict[str, Any]:
        """Check whatever of ``export_dir`` was not sent yet; the verdict, with the export report (or
        ``report_pending``: it follows :meth:`release`)."""
        self._tell({"dir": str(export_dir), "end": True, **({"report": "later"} if report_later else {})})
        end = time.time() + timeout
        while True:
            try:
                line = self._lines.get(timeout=max(end - time.time(), 0.01))
            except queue.Empty:
                self.cancel()
                raise ExportError(f"{export_dir}: parity check process did not finish in {timeout:.0f}s") from None
            if line is None or line.startswith("{"):
                break
        if line is None or not report_later:
            try:
                self.proc.wait(timeout=max(end - time.time(), 1))
            except subprocess.TimeoutExpired:
                self.cancel()
        if line is None or (not report_later and self.proc.returncode != 0):
            raise ExportError(f"{export_dir}: parity check process failed: {''.join(self._err)[-400:]}")
        return json.loads(line)

    def release(self, export_dir: Path) -> None:
        """Let the checker write its export report into ``export_dir`` (the folder now in place) and
        end on its own: :meth:`cancel` no longer stops it."""
        self._tell({"report_to": str(export_dir)}, close=True)
        self.released = True

    def cancel(self) -> None:
        if not self.released and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
