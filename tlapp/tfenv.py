"""Import TensorFlow/Keras quietly and lazily.

TF prints start-up chatter to fd 2 that ``TF_CPP_MIN_LOG_LEVEL`` only partly
silences; redirecting fd 2 around the import is the only reliable way. The
CLI's ``--help`` and catalog commands never call this, so they stay fast.
"""
from __future__ import annotations

import os
import sys
from typing import Any

_done = False


def quiet_import() -> tuple[Any, Any]:
    """Return ``(tf, keras)``, importing them with stderr muted once."""
    global _done
    if not _done:
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
        os.environ.setdefault("KERAS_BACKEND", "tensorflow")
        os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")
        sys.stderr.flush()
        saved = os.dup(2)
        devnull = os.open(os.devnull, os.O_WRONLY)
        try:
            os.dup2(devnull, 2)
            import tensorflow as tf  # noqa: F401
            import keras  # noqa: F401
            try:
                import absl.logging

                absl.logging.set_verbosity(absl.logging.ERROR)
            except ImportError:
                pass
            tf.get_logger().setLevel("ERROR")
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            os.close(devnull)
        _done = True
    import keras
    import tensorflow as tf

    return tf, keras


def quiet_keras_hub() -> Any:
    quiet_import()
    sys.stderr.flush()
    saved = os.dup(2)
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 2)
        import keras_hub
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)
    return keras_hub
