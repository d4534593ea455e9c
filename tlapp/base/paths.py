"""Where tlapp keeps things on disk.

The local model store holds imported/converted weights and is plain data.
In a source checkout it is ``<repo>/models``; installed elsewhere it falls back
to ``~/.tlapp/models``. ``TLAPP_HOME`` overrides both (tests point it at a temp
dir so they never touch the user's store).
"""

from __future__ import annotations

import os
from pathlib import Path

_REPO_ROOT = Path(__file__).resolve().parents[1]


def tlapp_home() -> Path:
    """Root of the local model store."""
    env = os.environ.get("TLAPP_HOME")
    if env:
        return Path(env).expanduser()
    if (_REPO_ROOT / "models").is_dir() and (_REPO_ROOT / "pyproject.toml").is_file():
        return _REPO_ROOT / "models"
    return Path.home() / ".tlapp" / "models"


def store_dir(*parts: str) -> Path:
    """A sub-folder of the model store, created on demand."""
    p = tlapp_home().joinpath(*parts)
    p.mkdir(parents=True, exist_ok=True)
    return p


def keras_home() -> Path:
    """Keras's cache root (``KERAS_HOME`` or ``~/.keras``)."""
    return Path(os.environ.get("KERAS_HOME", Path.home() / ".keras")).expanduser()


def keras_models_dir() -> Path:
    """Where ``keras.utils.get_file`` caches application weights."""
    return keras_home() / "models"


def projects_dir() -> Path:
    """Where the wizard puts projects it creates itself (the example, unsaved runs).

    ``TLAPP_PROJECTS`` overrides ``~/tlapp-projects`` (tests point it at a temp dir).
    """
    return Path(os.environ.get("TLAPP_PROJECTS", Path.home() / "tlapp-projects")).expanduser()
