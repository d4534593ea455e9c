"""Views of a tuned language model (tasks sft and dpo): the before/after table on held-out prompts, and a
chat box that asks the exported model. Both read the run folder and call the core; neither computes."""

from __future__ import annotations

import html
from pathlib import Path
from typing import Any, Optional

from PySide6.QtWidgets import (
    QDoubleSpinBox,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QLineEdit,
    QPushButton,
    QTableWidget,
    QTableWidgetItem,
    QTextBrowser,
    QVBoxLayout,
    QWidget,
)

from ..empty import EmptyState
from ..widgets import show_error
from ..workers import FunctionWorker


def preference_line(m: dict[str, Any]) -> str:
    """A DPO run's held-out figures: preference accuracy before and after, reward accuracy and margin."""
    val, n, pr = m.get("val"), m.get("n_val", 0), m.get("preference") or {}
    if not val:
        return (
            "<b>No validation triples</b> (too few to hold any out): nothing measures whether the preference "
            "generalises; the table shows training prompts."
        )
    acc = (pr.get("preference_accuracy") or {}).get("val") or {}
    before = acc.get("before")
    parts = [
        f"<b>Preference accuracy {acc.get('after', val['preference_accuracy']):.2f}</b> on {n} held-out triple(s)"
        + (f" (starting model: {before:.2f})" if before is not None else ""),
        f"reward accuracy {val['reward_accuracy']:.2f}",
        f"reward margin {val['reward_margin']:.3f}",
        f"DPO loss {val['loss']:.3f} (log 2 = 0.693 at the start)",
    ]
    sp = m.get("speed") or {}
    if sp.get("seconds_per_step_median"):
        parts.append(f"{sp['seconds_per_step_median']:.2f} s/step, peak memory {sp['peak_rss_gb']:.1f} GB")
    return " · ".join(parts)


def metrics_line(m: dict[str, Any]) -> str:
    """Held-out loss, perplexity and token accuracy in one line (what Evaluate heads with)."""
    if m.get("task") == "dpo":
        return preference_line(m)
    val, n = m.get("val"), m.get("n_val", 0)
    if not val:
        return (
            "<b>No validation pairs</b> (too few to hold any out): the table shows training prompts, so it "
            "says what the model memorised, not how it generalises."
        )
    parts = [
        f"<b>Validation perplexity {val['perplexity']:.2f}</b> on {n} held-out pair(s)",
        f"loss {val['loss']:.3f}",
        f"answer-token accuracy {val['token_accuracy']:.3f}",
    ]
    if m.get("test"):
        parts.append(f"test perplexity {m['test']['perplexity']:.2f}")
    best = m.get("best") or {}
    if best.get("restored"):
        parts.append(f"weights of epoch {best['epoch']} kept (later epochs were worse)")
    sp = m.get("speed") or {}
    if sp.get("seconds_per_step_median"):
        parts.append(f"{sp['seconds_per_step_median']:.2f} s/step, peak memory {sp['peak_rss_gb']:.1f} GB")
    return " · ".join(parts)


class BeforeAfterView(QWidget):
    """The base model's and the tuned model's greedy answers to held-out prompts, side by side."""

    COLUMNS = ["Prompt", "Expected (your data)", "Base model", "Tuned model"]

    def __init__(self) -> None:
        super().__init__()
        self.summary = QLabel()
        self.summary.setWordWrap(True)
        self.table = QTableWidget(0, len(self.COLUMNS))
        self.table.setObjectName("beforeAfter")
        self.table.setHorizontalHeaderLabels(self.COLUMNS)
        self.table.setEditTriggers(QTableWidget.EditTrigger.NoEditTriggers)
        self.table.setWordWrap(True)
        self.table.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeMode.Stretch)
        self.table.verticalHeader().setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
        self.table.setToolTip(
            "Greedy answers (no sampling) to prompts the model did not train on, before and "
            "after fine-tuning. The same table is in the run's model card."
        )
        self.box = EmptyState(
            self.table,
            "After training, the base model's and the tuned model's answers to "
            "held-out prompts appear here side by side.",
        )
        lay = QVBoxLayout(self)
        lay.setContentsMargins(0, 0, 0, 0)
        lay.addWidget(self.summary)
        lay.addWidget(QLabel("<b>Before and after</b> — the same questions, asked before and after tuning:"))
        lay.addWidget(self.box, 1)

    def show_metrics(self, m: dict[str, Any]) -> None:
        self.summary.setText(metrics_line(m))
        rows = m.get("samples") or []
        self.table.setHorizontalHeaderItem(
            1, QTableWidgetItem("Preferred (your data)" if m.get("task") == "dpo" else self.COLUMNS[1])
        )
        self.table.setRowCount(len(rows))
        for r, s in enumerate(rows):
            for c, key in enumerate(("prompt", "reference", "before", "after")):
                self.table.setItem(r, c, QTableWidgetItem(str(s.get(key, ""))))
        (self.box.show_content if rows else self.box.show_empty)()


class ChatBox(QWidget):
    """Ask the exported model (``export/preset``) questions; answers are computed off the GUI thread."""

    def __init__(self) -> None:
        super().__init__()
        self.run_dir: Optional[Path] = None
        self.model: Any = None
        self.turns: list[tuple[str, str]] = []  # (who, text), rendered whole each time
        self.worker: Optional[FunctionWorker] = None
        self.transcript = QTextBrowser()
        self.transcript.setObjectName("chatTranscript")
        self.transcript.setPlaceholderText(
            "Type a question below and press Enter: the tuned model answers here, exactly as the exported folder would."
        )
        self.prompt = QLineEdit()
        self.prompt.setObjectName("chatPrompt")
        self.prompt.setPlaceholderText("Ask the tuned model something, then press Enter")
        self.prompt.returnPressed.connect(self.ask)
        self.send = QPushButton("Ask")
        self.send.clicked.connect(self.ask)
        self.temperature = QDoubleSpinBox()
        self.temperature.setRange(0.0, 2.0)
        self.temperature.setSingleStep(0.1)
        self.temperature.setPrefix("temperature ")
        self.temperature.setToolTip("0: always the most likely words (repeatable). Higher: more varied answers.")
        row = QHBoxLayout()
        row.addWidget(self.prompt, 1)
        row.addWidget(self.temperature)
        row.addWidget(self.send)
        lay = QVBoxLayout(self)
        lay.setContentsMargins(0, 0, 0, 0)
        lay.addWidget(self.transcript, 1)
        lay.addLayout(row)

    def set_run(self, run_dir: Optional[Path]) -> None:
        if run_dir != self.run_dir:
            self.run_dir, self.model, self.turns = run_dir, None, []
            self.render()
        ready = run_dir is not None
        for w in (self.prompt, self.send, self.temperature):
            w.setEnabled(ready)

    def ask(self) -> None:
        text = self.prompt.text().strip()
        if not text or self.run_dir is None or (self.worker is not None and self.worker.isRunning()):
            return
        temperature, run = self.temperature.value(), self.run_dir

        def work() -> str:
            from tlapp.deploy.chat_model import ChatModel, run_model_folder  # loads TensorFlow: only when asked

            if self.model is None or self.model.generate.temperature != temperature:
                self.model = ChatModel(run_model_folder(run), temperature)
            return self.model.answer([text], 160)[0]

        self.turns.append(("You", text))
        self.render(thinking=True)
        self.prompt.clear()
        self.worker = FunctionWorker(work)
        self.worker.done.connect(self._answered)
        self.worker.failed.connect(lambda m, d: (self.render(), show_error(self, m, d)))
        self.worker.start()

    def render(self, thinking: bool = False) -> None:
        rows = [
            f"<p><b>{who}:</b> {html.escape(text) if text else '<i>(no answer)</i>'}</p>" for who, text in self.turns
        ]
        if thinking:
            rows.append("<p><i>thinking… (the first answer loads the model: a few seconds)</i></p>")
        self.transcript.setHtml("".join(rows))
        bar = self.transcript.verticalScrollBar()
        bar.setValue(bar.maximum())

    def _answered(self, answer: str) -> None:
        self.turns.append(("Model", answer))
        self.render()
