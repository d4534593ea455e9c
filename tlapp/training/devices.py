"""Which device trains: ``train.device`` is ``auto`` (TensorFlow's choice: the
first GPU when there is one), ``cpu``, ``gpu`` or ``gpu:N``.

Asking for a GPU that is not there is an error naming the value, never a silent
CPU run that takes 50 times longer than the user planned for.
"""

from __future__ import annotations

import contextlib
from typing import Any, ContextManager

from tlapp.base.errors import TrainingError
from tlapp.base.tfenv import quiet_import, visible_gpus


def devices() -> dict[str, Any]:
    """What TensorFlow sees: the GPUs by name, or why there is none."""
    tf, _ = quiet_import()
    gpus = visible_gpus()
    if gpus:
        names = []
        for g in gpus:
            try:
                names.append(tf.config.experimental.get_device_details(g).get("device_name", g.name))
            except Exception:  # details are optional driver metadata
                names.append(g.name)
        return {"device": "GPU", "gpus": names}
    why = "TensorFlow was built without CUDA" if not tf.test.is_built_with_cuda() else "no CUDA GPU visible"
    return {
        "device": "CPU",
        "why_not_gpu": f"{why} (install with `pip install tlapp[gpu]` on a machine with an NVIDIA GPU)",
    }


def describe_device(found: dict[str, Any], setting: str = "auto") -> str:
    """Where a run trains and why, in one line (the run header and the wizard), from :func:`devices`."""
    if found["device"] == "GPU" and setting != "cpu":
        return f"GPU ({', '.join(found['gpus'])})"
    return f"CPU ({'train.device: cpu' if setting == 'cpu' else found.get('why_not_gpu', '')})"


def tensor_cores(gpu: Any) -> bool:
    """Whether a GPU has tensor cores (compute capability 7.0 or more), where float16 maths pays."""
    tf, _ = quiet_import()
    try:
        cc = tf.config.experimental.get_device_details(gpu).get("compute_capability")
    except Exception:  # details are optional driver metadata
        return False
    return bool(cc) and tuple(cc) >= (7, 0)


def device_scope(device: str) -> ContextManager[Any]:
    """A ``tf.device`` scope for the configured device (``auto``: no scope)."""
    tf, _ = quiet_import()
    if device == "auto":
        return contextlib.nullcontext()
    if device == "cpu":
        return tf.device("/CPU:0")
    index = int(device.split(":")[1]) if ":" in device else 0
    gpus = visible_gpus()
    if index >= len(gpus):
        raise TrainingError(
            f"train.device: {device!r} requested but TensorFlow sees {len(gpus)} GPU(s) "
            f"({devices().get('why_not_gpu', '')}); use 'auto' or 'cpu'"
        )
    return tf.device(f"/GPU:{index}")
