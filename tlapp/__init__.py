"""tlapp: a transfer-learning workbench for TensorFlow/Keras.

The Python API mirrors the CLI::

    from tlapp import load_project, train
    result = train(load_project("project.yaml"), "runs/first")

Heavy modules (TensorFlow) are imported lazily so ``tlapp --help`` is instant.
"""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"

from tlapp.base.errors import TlappError  # noqa: E402
from tlapp.config import Project, load_project, save_project  # noqa: E402


def train(*args: Any, **kwargs: Any) -> Any:
    """See :func:`tlapp.training.run.train` (imported on first use: it loads TensorFlow)."""
    from tlapp.training.run import train as _train

    return _train(*args, **kwargs)


__all__ = ["Project", "TlappError", "load_project", "save_project", "train", "__version__"]
