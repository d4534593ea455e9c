"""Step 4 — Head & task: task type, pooling, dropout, hidden layers, class preview."""

from __future__ import annotations

from typing import Optional

from PySide6.QtWidgets import (
    QComboBox,
    QDoubleSpinBox,
    QFormLayout,
    QLabel,
    QLineEdit,
    QListWidget,
    QVBoxLayout,
    QWidget,
)

from tlapp.config import project_from_dict
from tlapp.model.tasks import output_spec
from tlapp.presets import with_head

from ..empty import EmptyState
from .base import WizardPage

IMAGE_TASKS = {
    "Single-label classification": "image_classification",
    "Multi-label classification": "multi_label",
    "Regression": "regression",
}
TEXT_TASKS = {"Single-label classification": "text_classification", "Multi-label classification": "text_multi_label"}
LM_NOTE = (
    "<b>A language model needs no head.</b> It answers in words: its own output layer (tied to its "
    "vocabulary) is what produces them, and the adapters you chose on the Layers step change what it says. "
    "Each pair becomes a chat turn in the model's template (ChatML: <i>user</i> asks, <i>assistant</i> "
    "answers), and the loss counts only the answer's tokens and its end marker, so the model learns to "
    "answer, not to repeat questions. Nothing to set here: press <b>Next</b>."
)


class HeadPage(WizardPage):
    title = "Head & task"
    intro = (
        "The head turns the backbone's features into your answer. Choose the task — one label per example, "
        "several labels, or a number — and, if you like, dropout or hidden layers. The defaults suit most "
        "data; press Next to train."
    )

    intro_lm = "A language model answers in words, so there is no head to attach: press Next to train."

    def __init__(self, state) -> None:
        super().__init__(state)
        self.task = QComboBox()
        self.task.addItems(list(IMAGE_TASKS))
        self.task.setToolTip(
            "Single-label: each example has exactly one class (the usual case). Multi-label: "
            "any number of labels (CSV with ';'-separated labels). Regression: a number per image."
        )
        self.pooling = QComboBox()
        self.pooling.addItems(["avg", "max"])
        self.pooling.setToolTip(
            "How the backbone's feature map becomes one vector. avg (default) suits most "
            "images; max can help when the object is small. Text: cls uses the first token."
        )
        self.dropout = QDoubleSpinBox()
        self.dropout.setRange(0, 0.9)
        self.dropout.setSingleStep(0.05)
        self.dropout.setToolTip(
            "Share of features randomly dropped while training the head: fights "
            "over-fitting on small data. Default 0.2."
        )
        self.hidden = QLineEdit()
        self.hidden.setPlaceholderText("e.g. 256, 128 (empty: a single output layer)")
        self.hidden.setToolTip(
            "Extra dense layers between the backbone and the output. Empty (default) is "
            "best for most data; hidden layers rarely help with few examples."
        )
        self.classes = QListWidget()
        self.classes_box = EmptyState(
            self.classes, "The classes found by the scan appear here (scan your data on the Data step)."
        )
        self.note = QLabel()
        self.note.setWordWrap(True)
        form = QFormLayout()
        form.addRow("Task", self.task)
        form.addRow("Pooling", self.pooling)
        form.addRow("Dropout", self.dropout)
        form.addRow("Hidden layers", self.hidden)
        self.lm_note = QLabel(LM_NOTE)
        self.lm_note.setObjectName("lmNote")
        self.lm_note.setWordWrap(True)
        self.lm_note.setStyleSheet(
            "QLabel#lmNote { font-size: 11pt; border: 1px solid palette(mid); border-radius: 8px; padding: 12px; }"
        )
        self.classifier = QWidget()
        inner = QVBoxLayout(self.classifier)
        inner.setContentsMargins(0, 0, 0, 0)
        inner.addLayout(form)
        inner.addWidget(QLabel("Classes (from the data scan):"))
        inner.addWidget(self.classes_box, 1)
        inner.addWidget(self.note)
        lay = QVBoxLayout(self)
        lay.addWidget(self.lm_note)
        lay.addWidget(self.classifier, 1)

    def refresh(self) -> None:
        p = self.state.project
        lm = p.task.type.is_generative
        self.lm_note.setVisible(lm)
        self.classifier.setVisible(not lm)
        if lm:
            return
        tasks = TEXT_TASKS if p.task.type.is_text else IMAGE_TASKS
        self.tasks = tasks
        self.task.blockSignals(True)
        self.task.clear()
        self.task.addItems(list(tasks))
        self.task.setCurrentText(next(k for k, v in tasks.items() if v == p.task.type.value))
        self.task.blockSignals(False)
        self.pooling.clear()
        self.pooling.addItems(["avg", "max", "cls"] if p.task.type.is_text else ["avg", "max"])
        self.pooling.setCurrentText(p.head.pooling)
        self.dropout.setValue(p.head.dropout)
        self.hidden.setText(", ".join(str(h) for h in p.head.hidden))
        self.classes.clear()
        rep = self.state.scan_report
        (self.classes_box.show_content if rep is not None and rep.counts else self.classes_box.show_empty)()
        if rep is not None:
            self.classes.addItems([f"{c}  ({n} examples)" for c, n in rep.counts.items()])
            units, act = output_spec(p.task.type, len(rep.classes))
            self.note.setText(f"Output: {units} unit(s), {act}.")

    def _hidden(self) -> list[int]:
        text = self.hidden.text().replace(";", ",")
        return [int(x) for x in text.split(",") if x.strip()]

    def commit(self) -> None:
        if self.state.project.task.type.is_generative:
            return
        d = self.state.project.model_dump(mode="json")
        d["task"]["type"] = getattr(self, "tasks", IMAGE_TASKS)[self.task.currentText()]
        d["head"].update(pooling=self.pooling.currentText(), dropout=self.dropout.value(), hidden=self._hidden())
        self.state.set_project(with_head(project_from_dict(d, "project")))

    def validate(self) -> Optional[str]:
        try:
            widths = self._hidden()
        except ValueError:
            return f"Hidden layers: {self.hidden.text()!r} is not a comma-separated list of integers"
        if any(w < 1 for w in widths):
            return "Hidden layers: widths must be >= 1"
        return None
