"""Step 6 — Evaluate: final metrics, confusion matrix (click a cell to see
those images), per-class precision/recall/F1, misclassified examples."""

from __future__ import annotations

import html
from typing import Any, Optional

from PySide6.QtCore import Qt
from PySide6.QtGui import QColor
from PySide6.QtWidgets import (
    QHBoxLayout,
    QLabel,
    QPushButton,
    QSplitter,
    QTableWidget,
    QTableWidgetItem,
    QTabWidget,
    QVBoxLayout,
    QWidget,
)

from tlapp.deploy.metrics import summary_lines
from tlapp.deploy.summary import summarize_run
from tlapp.rundir import RunDir

from ..empty import EmptyState
from ..widgets import ThumbGrid, open_folder
from .base import WizardPage
from .data_insight import LabelCheckView, MoreDataPanel
from .label_next import LabelNextPanel
from .lm_views import BeforeAfterView


class EvaluatePage(WizardPage):
    title = "Evaluate"
    intro = (
        "How well the trained model does on examples it never learned from: accuracy, which classes it "
        "confuses (rows: the true class, columns: what the model said) and per-class scores. Click a cell "
        "of the matrix to see those examples; then press Next to export and try the model."
    )

    intro_lm = (
        "How the tuned model does on pairs it never trained on: perplexity of the expected answers (1 is "
        "perfect) and the share of answer tokens it predicts, then the base and the tuned model's answers to "
        "the same held-out questions, side by side. Press Next to chat with it."
    )
    intro_dpo = (
        "How the tuned model does on triples it never trained on: how often it finds your preferred answer "
        "likelier than the other (before tuning, then after), its rewards, then the base and the tuned model's "
        "answers to the same held-out questions, side by side. Press Next to chat with it."
    )

    def __init__(self, state) -> None:
        super().__init__(state)
        self.evaluation: dict[str, Any] = {}
        self.summary = QLabel(
            "No evaluation yet: train a model on the Training step (or open a finished run with File > Open run…)."
        )
        self.summary.setWordWrap(True)
        self.report_btn = QPushButton("Open full report")
        self.report_btn.setToolTip(
            "report.html in the run folder: metrics per split, plots (confusion, "
            "calibration), and the most confidently wrong examples of each class"
        )
        self.report_btn.clicked.connect(self._open_report)
        self.report_btn.setEnabled(False)
        self.matrix = QTableWidget()
        self.matrix.setEditTriggers(QTableWidget.EditTrigger.NoEditTriggers)
        self.matrix.cellClicked.connect(self.show_cell)
        self.matrix.setToolTip(
            "Rows: true class; columns: predicted class. The diagonal is right; click any cell "
            "to see its examples below."
        )
        self.per_class = QTableWidget(0, 4)
        self.per_class.setHorizontalHeaderLabels(["Precision", "Recall", "F1", "Support"])
        self.per_class.setEditTriggers(QTableWidget.EditTrigger.NoEditTriggers)
        self.per_class.setToolTip(
            "Precision: of the examples called this class, the share that were. Recall: of "
            "this class's examples, the share found. F1: their balance. Support: examples."
        )
        self.cell_label = QLabel("")
        self.images = ThumbGrid(72)
        self.matrix_box = EmptyState(
            self.matrix, "The confusion matrix appears here after training: which classes the model mixes up."
        )
        self.per_class_box = EmptyState(
            self.per_class, "Precision, recall and F1 for each class appear here after training."
        )
        self.images_box = EmptyState(
            self.images, "Examples the model got wrong appear here, with what it said and how sure it was."
        )
        top = self.top = QSplitter(Qt.Orientation.Horizontal)
        top.setObjectName("evaluateTop")
        self.lm_view = BeforeAfterView()
        self.lm_view.setVisible(False)
        for title, w in (
            ("Confusion matrix (rows: true, columns: predicted)", self.matrix_box),
            ("Per class", self.per_class_box),
        ):
            box = QWidget()
            bl = QVBoxLayout(box)
            bl.setContentsMargins(0, 0, 0, 0)
            bl.addWidget(QLabel(title))
            bl.addWidget(w)
            top.addWidget(box)
        lay = QVBoxLayout(self)
        head_row = QHBoxLayout()
        head_row.addWidget(self.summary, 1)
        head_row.addWidget(self.report_btn)
        lay.addLayout(head_row)
        wrong = QWidget()
        wl = QVBoxLayout(wrong)
        wl.setContentsMargins(0, 0, 0, 0)
        wl.addWidget(self.cell_label)
        wl.addWidget(self.images_box, 1)
        self.more_data = MoreDataPanel()
        self.label_check = LabelCheckView(state)
        self.tabs = QTabWidget()
        self.tabs.setObjectName("evaluateTabs")
        self.tabs.addTab(wrong, "Misclassified")
        self.tabs.addTab(self.more_data, "More data?")
        self.tabs.addTab(self.label_check, "Check labels")
        self.label_next = LabelNextPanel(state)
        self.tabs.addTab(self.label_next, "Label next")
        # One splitter, so the matrix keeps its room whatever a tab below asks for; the person can drag it.
        self.split = QSplitter(Qt.Orientation.Vertical)
        self.split.setObjectName("evaluateSplit")
        self.split.addWidget(top)
        self.split.addWidget(self.tabs)
        self.split.setStretchFactor(0, 3)
        self.split.setStretchFactor(1, 2)
        self.split.setChildrenCollapsible(False)
        lay.addWidget(self.split, 1)
        lay.addWidget(self.lm_view, 3)

    def _open_report(self) -> None:
        rd = RunDir(self.state.run_dir)
        open_folder(rd.model_card if self.state.project.task.type.is_generative else rd.report_html)

    def _show_lm(self, lm: bool) -> None:
        self.report_btn.setText("Open model card" if lm else "Open full report")
        self.split.setVisible(not lm)
        self.lm_view.setVisible(lm)

    def refresh(self) -> None:
        lm = self.state.project.task.type.is_generative
        self._show_lm(lm)
        if lm:
            self.summary.setText(
                "No evaluation yet: train the model on the Training step (or open a finished run "
                "with File > Open run…). Its held-out perplexity and before/after answers appear "
                "here."
            )
            self.report_btn.setEnabled(False)
        if self.state.run_dir is None or not RunDir(self.state.run_dir).is_finished():
            if lm:
                self.evaluation = {}
                self.lm_view.show_metrics({"samples": []})
                self.lm_view.summary.setText("")
                return
            self.evaluation = {}
            for box in (self.matrix_box, self.per_class_box, self.images_box):
                box.show_empty()
            self.cell_label.setText("")
            self.report_btn.setEnabled(False)
            self.more_data.show_run(None)
            self.label_check.show_run(None)
            self.label_next.show_run(None, [], False)
            return
        rd = RunDir(self.state.run_dir)
        if lm:
            self.evaluation = rd.read_json(rd.metrics, {})
            self.report_btn.setEnabled(rd.model_card.is_file())
            self.summary.setText(
                f"Evaluated on {'triples' if self.state.project.task.type.value == 'dpo' else 'pairs'} the model "
                "never trained on. Open <b>model_card.md</b> in the "
                "run folder for the full record. Press Next to try the tuned model."
            )
            self.lm_view.show_metrics(self.evaluation)
            return
        self.report_btn.setEnabled(rd.report_html.is_file())
        self.evaluation = rd.read_json(rd.evaluation, {})
        metrics = rd.read_json(rd.metrics, {})
        best = metrics.get("best", {})
        # The headline and every task's metrics as the core words them (tlapp evaluate, the summary card).
        parts = [f"<b>{html.escape(summarize_run(rd.root).headline)}</b>"]
        parts += [html.escape(x) for x in summary_lines(self.evaluation)[: 2 if "rmse" in self.evaluation else 1]]
        test = metrics.get("test") or {}
        if test:
            parts.append(f"<b>test</b>: {html.escape(summary_lines(test)[0])}")
        if metrics.get("recipe", {}).get("summary"):
            self.summary.setToolTip(f"Recipe: {metrics['recipe']['summary']}")
        if best.get("restored"):
            parts.append(f"best weights from phase '{best['phase_name']}' epoch {best['epoch']} were kept")
        self.summary.setText(" · ".join(parts))
        has_matrix = bool(self.evaluation.get("confusion_matrix"))
        for box in (self.matrix_box, self.per_class_box):
            if has_matrix:
                box.show_content()
            else:
                box.show_empty("This task has no confusion matrix; its metrics are in the line above.")
        self.fill_matrix()
        self.show_cell(-1, -1)
        self.more_data.show_run(rd)
        self.label_check.show_run(rd)
        task = self.state.project.task.type
        self.label_next.show_run(
            rd.root if task.is_single_label else None, self.evaluation.get("classes", []), task.is_text
        )

    def fill_matrix(self) -> None:
        classes = self.evaluation.get("classes", [])
        cm = self.evaluation.get("confusion_matrix", [])
        self.matrix.setRowCount(len(classes))
        self.matrix.setColumnCount(len(classes))
        self.matrix.setHorizontalHeaderLabels(classes)
        self.matrix.setVerticalHeaderLabels(classes)
        peak = max((max(r) for r in cm), default=1) or 1
        for i, row in enumerate(cm):
            for j, n in enumerate(row):
                it = QTableWidgetItem(str(n))
                it.setTextAlignment(Qt.AlignmentFlag.AlignCenter)
                shade = int(255 - 150 * n / peak)
                it.setBackground(
                    QColor(shade, shade, 255) if i == j else QColor(255, shade, shade) if n else QColor(255, 255, 255)
                )
                it.setForeground(QColor(0, 0, 0))
                self.matrix.setItem(i, j, it)
        self.matrix.resizeColumnsToContents()
        per = self.evaluation.get("per_class", {})
        self.per_class.setRowCount(len(per))
        self.per_class.setVerticalHeaderLabels(list(per))
        for r, m in enumerate(per.values()):
            for c, key in enumerate(("precision", "recall", "f1", "support")):
                v = m[key]
                self.per_class.setItem(r, c, QTableWidgetItem(f"{v:.3f}" if isinstance(v, float) else str(v)))

    def show_cell(self, row: int, col: int) -> None:
        preds = self.evaluation.get("predictions", [])
        classes = self.evaluation.get("classes", [])
        if row < 0:
            chosen = sorted((p for p in preds if p["true"] != p["pred"]), key=lambda p: -float(p.get("score", 0)))
            which = "out-of-fold" if self.evaluation.get("method") == "cross-validation" else "validation"
            self.cell_label.setText(
                f"Misclassified {which} examples: {len(chosen)}, the most confidently wrong "
                "first (check their labels; click a confusion-matrix cell for one pair)"
            )
        else:
            t, pr = classes[row], classes[col]
            chosen = [p for p in preds if p["true"] == t and p["pred"] == pr]
            self.cell_label.setText(f"True '{t}', predicted '{pr}': {len(chosen)} example(s)")
        if not chosen:
            self.images_box.show_empty(
                "✓ No examples in this cell." if row >= 0 else "✓ The model got every evaluated example right."
            )
            return
        self.images_box.show_content()
        if "text" in chosen[0]:
            self.images.set_texts(
                [f"[{p['true']}→{p['pred']} {p.get('score', 0):.2f}] {p['text']}" for p in chosen[:200]]
            )
        else:
            self.images.set_items(
                [(p["path"], f"{p['true']}→{p['pred']} {p.get('score', 0):.2f}") for p in chosen[:200]]
            )

    def validate(self) -> Optional[str]:
        return None if self.evaluation else "No evaluation yet: finish a training run first."
