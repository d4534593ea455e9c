"""Labels to model targets: class index, multi-hot vector or float value."""

from __future__ import annotations

from typing import Any

import numpy as np

from tlapp.config import TaskType
from tlapp.data.examples import Example


class LabelEncoder:
    """Maps labels to model targets for the task."""

    def __init__(self, task: TaskType, classes: list[str]) -> None:
        self.task, self.classes = task, list(classes)
        self.index = {c: i for i, c in enumerate(self.classes)}

    def encode(self, label: Any) -> np.ndarray:
        if self.task == TaskType.regression:
            return np.array([float(label)], np.float32)
        if self.task.is_multi_label:
            v = np.zeros(len(self.classes), np.float32)
            for lab in label:
                v[self.index[lab]] = 1.0
            return v
        return np.array(self.index[label], np.int32)

    def encode_all(self, examples: list[Example]) -> np.ndarray:
        return np.stack([self.encode(e.label) for e in examples]) if examples else np.zeros((0,), np.int32)
