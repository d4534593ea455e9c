"""Import TensorFlow/Keras quietly and lazily.

TF prints start-up chatter to fd 2 that ``TF_CPP_MIN_LOG_LEVEL`` only partly
silences; redirecting fd 2 around the import is the only reliable way. The
CLI's ``--help`` and catalog commands never call this, so they stay fast.
"""

from __future__ import annotations

import os
import sys
from contextlib import contextmanager
from typing import Any, Iterator

_done = False


@contextmanager
def _muted_stderr() -> Iterator[None]:
    """Point fd 2 at /dev/null (C++ logging bypasses Python's sys.stderr)."""
    sys.stderr.flush()
    saved = os.dup(2)
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)


muted_stderr = _muted_stderr  # for other C++ chatter (the TFLite converter's quantiser)


def quiet_import() -> tuple[Any, Any]:
    """Return ``(tf, keras)``, importing them with stderr muted once."""
    global _done
    if not _done:
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
        os.environ.setdefault("KERAS_BACKEND", "tensorflow")
        os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")
        with _muted_stderr():
            import keras  # noqa: F401
            import tensorflow as tf

            try:
                import absl.logging

                absl.logging.set_verbosity(absl.logging.ERROR)
            except ImportError:
                pass
            tf.get_logger().setLevel("ERROR")
            tf.config.list_physical_devices("GPU")  # probes CUDA once, here, where its chatter is muted
            _split_cpu(tf)
        _done = True
    import keras
    import tensorflow as tf

    return tf, keras


def cpu_devices_wanted() -> int:
    """``TLAPP_CPU_DEVICES=N``: how many logical CPU devices to split the CPU into (1 when unset)."""
    raw = os.environ.get("TLAPP_CPU_DEVICES", "").strip()
    if not raw:
        return 1
    if not raw.isdigit() or not 1 <= int(raw) <= 64:
        from tlapp.base.errors import ConfigError

        raise ConfigError(f"TLAPP_CPU_DEVICES: {raw!r} is not a whole number from 1 to 64")
    return int(raw)


def _split_cpu(tf: Any) -> None:
    """Split the CPU into logical devices (for trying several-device strategies on one machine).

    Only possible before TensorFlow's runtime starts, which is why it happens here, at import.
    """
    n = cpu_devices_wanted()
    if n > 1:
        cpu = tf.config.list_physical_devices("CPU")[0]
        tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * n)


def logical_cpus() -> int:
    """Logical CPU devices TensorFlow has (more than 1 only with ``TLAPP_CPU_DEVICES``)."""
    tf, _ = quiet_import()
    return len(tf.config.list_logical_devices("CPU"))


def quiet_keras_hub() -> Any:
    quiet_import()
    with _muted_stderr():
        import keras_hub
    return keras_hub


def visible_gpus() -> list[Any]:
    """TensorFlow's GPUs; the first call probes CUDA, whose failure chatter on GPU-less machines goes to fd 2."""
    tf, _ = quiet_import()
    with _muted_stderr():
        return tf.config.list_physical_devices("GPU")
