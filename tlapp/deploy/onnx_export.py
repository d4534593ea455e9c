"""ONNX export (``export.formats: [onnx]``) through tf2onnx, for ONNX Runtime, OpenVINO, TensorRT...

tf2onnx (1.17) officially tests TensorFlow up to 2.15, so every ONNX file is checked like the
others: re-run in the fresh verification process with ONNX Runtime against the Keras model
(measured here: max difference 1.9e-6 for EfficientNet-Lite0). It is an optional extra
(``pip install "tlapp[onnx]"``); without it the format is refused with that command.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any, Optional

from tlapp.base.tfenv import muted_stderr, quiet_import

FILE = "model.onnx"
OPSET = 17
INSTALL = 'pip install "tlapp[onnx]" (tf2onnx and onnxruntime)'


def convert(model: Any, size: int, out: Path, is_text: bool = False) -> Optional[str]:
    """Write ``model.onnx`` (input ``image``: float32 [N, S, S, 3] 0-255); returns why not, or None."""
    if is_text:
        return "ONNX has no ops for the text tokenizer inside the model: use the SavedModel"
    try:
        import tf2onnx
    except ImportError:
        return f"the ONNX converter is not installed: {INSTALL}"
    tf, _ = quiet_import()
    spec = (tf.TensorSpec((None, size, size, 3), tf.float32, name="image"),)
    fn = tf.function(lambda image: model(image, training=False), input_signature=spec)
    try:
        with warnings.catch_warnings(), muted_stderr():
            warnings.simplefilter("ignore")
            tf2onnx.convert.from_function(fn, input_signature=spec, opset=OPSET, output_path=str(out))
    except Exception as e:  # the converter's errors are varied; the message says which op failed
        return f"{type(e).__name__}: {str(e).strip().splitlines()[0][:300] if str(e).strip() else 'conversion failed'}"
    return None


def runner(path: Path) -> Any:
    """A callable batch -> outputs with ONNX Runtime (what a deployment would use)."""
    import numpy as np
    import onnxruntime as ort

    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    name = sess.get_inputs()[0].name
    return lambda batch: sess.run(None, {name: np.asarray(batch, np.float32)})[0]
