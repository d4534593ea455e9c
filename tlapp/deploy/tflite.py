"""TensorFlow Lite exports for phones and small boards: float32, float16 weights, and full-integer
int8 calibrated on the user's own training images.

Each file takes one image, raw RGB pixels at the model's size (``[1, S, S, 3]``: float32 0-255,
or uint8 for int8) — the same preprocessing-inside-the-model contract as the SavedModel. Text
models are refused: their tokenizer ops do not exist in TensorFlow Lite's builtin set.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any, Optional

import numpy as np

from tlapp.base.tfenv import muted_stderr, quiet_import

# Export format -> file name in the export folder.
FILES = {"tflite": "model.tflite", "tflite_fp16": "model_fp16.tflite", "tflite_int8": "model_int8.tflite"}
REPRESENTATIVE_IMAGES = 100  # calibration images for int8 (TensorFlow's guidance: ~100-500)


def convert(
    model: Any, size: int, kind: str, out: Path, representative: Optional[np.ndarray] = None, is_text: bool = False
) -> Optional[str]:
    """Write ``kind`` (a key of :data:`FILES`) to ``out``; returns why it could not, or None."""
    if is_text:
        return "TensorFlow Lite has no ops for the text tokenizer inside the model: use the SavedModel"
    if kind == "tflite_int8" and (representative is None or not len(representative)):
        return "int8 needs representative training images to calibrate on, and none were given"
    tf, _ = quiet_import()
    fn = tf.function(
        lambda image: model(image, training=False),
        input_signature=[tf.TensorSpec((1, size, size, 3), tf.float32, name="image")],
    )
    # No trackable object: the converter freezes the weights into constants. Handing it the model kept
    # them as variables, which int8 calibration cannot read ("READ_VARIABLE failed to invoke").
    conv = tf.lite.TFLiteConverter.from_concrete_functions([fn.get_concrete_function()])
    if kind == "tflite_fp16":
        conv.optimizations = [tf.lite.Optimize.DEFAULT]
        conv.target_spec.supported_types = [tf.float16]
    elif kind == "tflite_int8":
        images = representative.astype(np.float32)  # type: ignore[union-attr]

        def calibration():
            for img in images:
                yield [img[None]]

        conv.optimizations = [tf.lite.Optimize.DEFAULT]
        conv.representative_dataset = calibration
        conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        conv.inference_input_type = tf.uint8
        conv.inference_output_type = tf.uint8
    try:
        with warnings.catch_warnings(), muted_stderr():  # the quantiser's notes are not the user's problem
            warnings.simplefilter("ignore")
            out.write_bytes(conv.convert())
    except Exception as e:  # the converter reports unsupported ops as a generic error
        return f"{type(e).__name__}: {str(e).strip().splitlines()[0][:300] if str(e).strip() else 'conversion failed'}"
    return None


class Runner:
    """One ``.tflite`` file, run one image at a time the way a device would, (de)quantising int8
    inputs and outputs with the file's own scale and zero point."""

    def __init__(self, path: Path) -> None:
        tf, _ = quiet_import()
        self.interp = tf.lite.Interpreter(model_path=str(path), num_threads=1)
        self.interp.allocate_tensors()
        self.inp = self.interp.get_input_details()[0]
        self.out = self.interp.get_output_details()[0]

    def __call__(self, image: np.ndarray) -> np.ndarray:
        """``image``: uint8 or float [S, S, 3] in 0-255 -> the model's output vector (float)."""
        x = image.astype(np.float32)[None]
        if self.inp["dtype"] != np.float32:
            scale, zero = self.inp["quantization"]
            x = np.clip(np.round(x / scale + zero) if scale else x, 0, 255).astype(self.inp["dtype"])
        self.interp.set_tensor(self.inp["index"], x)
        self.interp.invoke()
        y = self.interp.get_tensor(self.out["index"])[0]
        if self.out["dtype"] != np.float32:
            scale, zero = self.out["quantization"]
            y = (y.astype(np.float32) - zero) * scale
        return y.astype(np.float32)


def representative_images(paths: list[str], size: int, n: int = REPRESENTATIVE_IMAGES, seed: int = 0) -> np.ndarray:
    """Up to ``n`` training images (a seeded draw), decoded exactly as training decodes them."""
    from tlapp.data.imageio import ImageProblem, load_rgb

    order = np.random.default_rng(seed).permutation(len(paths))
    out = []
    for i in order:
        if len(out) >= n:
            break
        try:
            out.append(load_rgb(paths[i], (size, size)))
        except (ImageProblem, OSError):
            continue
    return np.stack(out) if out else np.zeros((0, size, size, 3), np.uint8)
