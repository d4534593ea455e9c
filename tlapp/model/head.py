"""The task head and the assembled model's parts.

A model is ``features`` (input -> pooled vector) joined to ``head`` (vector ->
outputs), so a head trained on cached embeddings is the very same layer
objects the full model uses.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Optional

from tlapp.base.tfenv import quiet_import
from tlapp.config import Project, TaskType
from tlapp.model.tasks import loss_name, metric_name, output_spec

tf, keras = quiet_import()


@dataclass
class Assembled:
    """An assembled model and the handles training needs.

    ``backbone`` is a :class:`~tlapp.backbones.image.BuiltBackbone` or a
    :class:`~tlapp.backbones.text.TextBackbone`. Text models also carry
    ``token_model`` (the same layers fed token ids, saved as ``model.keras``)
    and ``encoder`` (token ids -> pooled vector).
    """

    model: Any
    features: Any
    head: Any
    backbone: Any
    feature_dim: int
    token_model: Optional[Any] = None
    encoder: Optional[Any] = None


def build_head(project: Project, feature_dim: int, n_classes: int) -> Any:
    units, act = output_spec(project.task.type, n_classes)
    inp = keras.Input((feature_dim,), name="embedding")
    x = inp
    for i, width in enumerate(project.head.hidden):
        x = keras.layers.Dense(width, activation=project.head.activation, name=f"head_hidden_{i}")(x)
        if project.head.dropout:
            x = keras.layers.Dropout(project.head.dropout, name=f"head_dropout_{i}")(x)
    if project.head.dropout and not project.head.hidden:
        x = keras.layers.Dropout(project.head.dropout, name="head_dropout")(x)
    out = keras.layers.Dense(units, activation=act, dtype="float32", name="predictions")(x)
    return keras.Model(inp, out, name="head")


def loss_and_metrics(task: TaskType) -> tuple[str, list[Any]]:
    """The Keras loss and metrics to compile with."""
    if task.is_multi_label:
        return loss_name(task), [keras.metrics.BinaryAccuracy(name=metric_name(task))]
    return loss_name(task), [metric_name(task)]
