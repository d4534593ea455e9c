"""What each task means for the model's output, its loss and the metric that
decides "better" — plain data, no TensorFlow, so the GUI and the CLI can show
it without loading a model.
"""

from __future__ import annotations

from tlapp.config import TaskType


def output_spec(task: TaskType, n_classes: int) -> tuple[int, str]:
    """(units, activation) of the prediction layer."""
    if task == TaskType.regression:
        return 1, "linear"
    return n_classes, "sigmoid" if task.is_multi_label else "softmax"


def loss_name(task: TaskType) -> str:
    if task == TaskType.regression:
        return "mse"
    return "binary_crossentropy" if task.is_multi_label else "sparse_categorical_crossentropy"


def metric_name(task: TaskType) -> str:
    """The metric compiled into the model, shown in charts and logs ("val_" + it on validation)."""
    if task == TaskType.sft:
        return "perplexity"
    if task == TaskType.dpo:
        return "reward_accuracy"
    return "mae" if task == TaskType.regression else "accuracy"


def monitor(task: TaskType) -> tuple[str, str]:
    """(metric, mode) that picks the best epoch: accuracy for single-label, loss otherwise."""
    return ("val_accuracy", "max") if task.is_single_label else ("val_loss", "min")
