"""Step 1 — Data: choose a folder / CSV / TFDS name (or drop it on the window),
scan in the background with progress and Cancel, see class counts, sample
thumbnails, unusable files and the split."""

from __future__ import annotations

import random
from pathlib import Path
from typing import Optional

from PySide6.QtCore import Qt
from PySide6.QtWidgets import (
    QComboBox,
    QFileDialog,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QProgressBar,
    QPushButton,
    QSlider,
    QSpinBox,
    QSplitter,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from tlapp.base.errors import DataError
from tlapp.base.progress import Rate
from tlapp.config import Data, TaskType
from tlapp.data.pairs import PairsReport
from tlapp.data.preferences import TriplesReport
from tlapp.data.sources import scan_project_data
from tlapp.data.starter import guess_task, retarget, source_kind

from ..empty import EmptyState
from ..theme import BAD, WARN
from ..widgets import BarChart, ThumbGrid, show_error
from ..workers import FunctionWorker
from .base import WizardPage

IMAGE_HINT = "Folder with one sub-folder per class (e.g. photos/cats, photos/dogs), or a CSV of path,label"
TEXT_HINT = "CSV/TSV with a text and a label column, or a folder with one sub-folder of .txt files per class"
PAIRS_HINT = ".jsonl with prompt/response (or chat messages) per line, or a CSV/TSV with prompt,response columns"
TRIPLES_HINT = ".jsonl with prompt, chosen and rejected per line (optional system), or a CSV/TSV with those columns"
KINDS = {
    "Images": "image",
    "Text": "text",
    "Pairs (language model)": "pairs",
    "Preferences (language model)": "triples",
}
LM_KINDS = ("pairs", "triples")


def kind_label(task: TaskType) -> str:
    """The Kind box's entry for a task."""
    if task is TaskType.dpo:
        return "Preferences (language model)"
    return "Pairs (language model)" if task.is_generative else "Text" if task.is_text else "Images"


def task_kind(task: TaskType) -> str:
    return KINDS[kind_label(task)]


def _scan(project, project_file, progress=None, should_stop=None):
    """The worker's job: pairs for a language model, else files/rows (both are core functions)."""
    if project.task.type.is_generative:
        from tlapp.model.lm_scan import scan_project_pairs

        return scan_project_pairs(project, project_file)
    return scan_project_data(project, project_file, progress, should_stop)


class DataPage(WizardPage):
    title = "Data"
    intro = (
        "Point tlapp at your examples — type a path, press Browse…, or drop a folder or CSV on this window. "
        "Scanning decodes every file once, so training never trips over a bad one; you then see how many "
        "examples each class has, a sample of them, and anything skipped and why. Finally choose how many "
        "examples to hold out for validation, then press Next."
    )

    intro_lm = (
        "Your prompt → response pairs: each becomes a chat turn the model learns to answer. The scan reads "
        "every line once and names any it cannot use; check a few answers below, choose how many pairs to "
        "hold out to measure the model honestly, then press Next."
    )

    intro_dpo = (
        "Your preferences: for each prompt, the answer you want and one you do not. The model learns to prefer "
        "the first (DPO) while staying close to where it started. The scan reads every line once and names any "
        "it cannot use (a missing answer, two identical answers); check a few below, choose how many triples to "
        "hold out to measure the preference honestly, then press Next."
    )

    def __init__(self, state) -> None:
        super().__init__(state)
        self.worker: Optional[FunctionWorker] = None
        self.setAcceptDrops(True)
        self.kind = QComboBox()
        self.kind.addItems(list(KINDS))
        self.kind.setToolTip(
            "What the examples are: image files, texts (CSV/TSV rows or .txt files), or "
            "prompt → response pairs that teach a language model. Changing it picks the "
            "matching default backbone."
        )
        self.source = QComboBox()
        self.source.addItems(["folder", "csv", "tfds", "pairs"])
        self.source.setToolTip(
            "Where the examples come from: a folder per class, a CSV/TSV table, or a "
            "TensorFlow Datasets name (downloaded when online). Set from the path you give."
        )
        self.text_col, self.label_col = QLineEdit(), QLineEdit()
        self.text_col.setPlaceholderText("text column (default: text)")
        self.label_col.setPlaceholderText("label column (default: label)")
        self.text_col.setToolTip(
            "The CSV column that holds the texts. Empty: a column named 'text', or the "
            "longer field of a header-less file."
        )
        self.label_col.setToolTip("The CSV column that holds the labels. Empty: a column named 'label'.")
        self.path = QLineEdit()
        self.path.setPlaceholderText(IMAGE_HINT)
        self.path.setToolTip("Your data: a folder, a CSV/TSV file, or a TFDS name. Press Enter to scan.")
        self.path.returnPressed.connect(self.start_scan)
        browse = QPushButton("Browse…")
        browse.setToolTip("Pick a folder (images) or a table (text, or image CSV)")
        browse.clicked.connect(self.browse)
        self.scan_btn = QPushButton("Scan")
        self.scan_btn.setToolTip(
            "Read every file once and report what is usable (runs in the background; press again to cancel)"
        )
        self.scan_btn.clicked.connect(self._scan_clicked)
        row = QHBoxLayout()
        row.addWidget(self.kind)
        row.addWidget(self.source)
        row.addWidget(self.path, 1)
        row.addWidget(browse)
        row.addWidget(self.scan_btn)
        self.progress = QProgressBar()
        self.progress.setVisible(False)
        self.progress.setObjectName("scanProgress")
        self.rate = Rate()
        self.summary = QLabel("No data yet. Choose a folder or a table above (or drop one here), then press Scan.")
        self.summary.setWordWrap(True)
        self.val = self._slider(0, 50)
        self.val.setToolTip(
            "Share of each class held out to measure accuracy honestly (never trained on). "
            "Default 20%. With the Fast/Balanced recipes small data sets are cross-validated, "
            "so no example is wasted."
        )
        self.test = self._slider(0, 40)
        self.test.setToolTip(
            "Share held out for a final test, touched once at the end. Default 0%: most "
            "small projects are better served by validation alone."
        )
        self.val_label, self.test_label = QLabel(), QLabel()
        self.seed = QSpinBox()
        self.seed.setRange(0, 2**31 - 1)
        self.seed.setToolTip(
            "Seed of the random split. Keep it to compare runs on the same split; change it "
            "to check a result is not luck."
        )
        split = self.split_form = QFormLayout()
        for label, slider, text in (("Validation", self.val, self.val_label), ("Test", self.test, self.test_label)):
            h = QHBoxLayout()
            h.addWidget(slider, 1)
            h.addWidget(text)
            split.addRow(label, h)
        split.addRow("Split seed", self.seed)
        cols = QHBoxLayout()
        cols.addWidget(self.text_col)
        cols.addWidget(self.label_col)
        split.addRow("Text columns", cols)
        self.text_cols_row = split.rowCount() - 1
        self.lengths = BarChart()
        self.samples = QTableWidget(0, 2)
        self.samples.setHorizontalHeaderLabels(["Label", "Text (sample rows)"])
        self.samples.horizontalHeader().setStretchLastSection(True)
        self.samples.setEditTriggers(QTableWidget.EditTrigger.NoEditTriggers)
        self.kind.currentTextChanged.connect(self._kind_changed)
        self.chart = BarChart()
        self.chart.setToolTip(
            "Examples per class. Very uneven bars: tlapp weighs the classes so the small ones still count."
        )
        self.thumbs = ThumbGrid(64)
        self.thumbs.setToolTip("Four random examples per class: check the labels look right")
        self.bad = QTableWidget(0, 2)
        self.bad.setHorizontalHeaderLabels(["Skipped file", "Reason"])
        self.bad.horizontalHeader().setStretchLastSection(True)
        self.bad.setEditTriggers(QTableWidget.EditTrigger.NoEditTriggers)
        self.chart_box = EmptyState(self.chart, "Examples per class appear here after the scan.")
        self.thumbs_box = EmptyState(
            self.thumbs, "A sample of your images, four per class, appears here after the scan."
        )
        self.lengths_box = EmptyState(
            self.lengths, "Text lengths appear here after the scan; they set how many tokens the model reads."
        )
        self.samples_box = EmptyState(self.samples, "Sample rows (label and text) appear here after the scan.")
        self.bad_box = EmptyState(
            self.bad,
            "Files that cannot be used (unreadable, empty, unsupported) are "
            "listed here with the reason, after the scan.",
        )
        views = QSplitter(Qt.Orientation.Vertical)
        views.setObjectName("dataViews")
        top = self.top = QSplitter(Qt.Orientation.Horizontal)
        top.setObjectName("dataTop")
        top.addWidget(self.chart_box)
        top.addWidget(self.thumbs_box)
        top.addWidget(self.lengths_box)
        top.addWidget(self.samples_box)
        views.addWidget(top)
        views.addWidget(self.bad_box)
        views.setStretchFactor(0, 3)
        views.setStretchFactor(1, 1)
        lay = QVBoxLayout(self)
        lay.addLayout(row)
        lay.addWidget(self.progress)
        lay.addWidget(self.summary)
        box = QWidget()
        box.setLayout(split)
        lay.addWidget(box)
        lay.addWidget(views, 1)
        for s in (self.val, self.test):
            s.valueChanged.connect(self._split_labels)

    def _slider(self, lo: int, hi: int) -> QSlider:
        s = QSlider(Qt.Orientation.Horizontal)
        s.setRange(lo, hi)
        return s

    def kind_key(self) -> str:
        return KINDS[self.kind.currentText()]

    def is_text(self) -> bool:
        return self.kind_key() == "text"

    def _kind_changed(self) -> None:
        kind = self.kind_key()
        words = kind != "image"
        for w in (self.lengths_box, self.samples_box):
            w.setVisible(words)
        lm = kind in LM_KINDS
        self.chart_box.setVisible(not lm)
        self.split_form.setRowVisible(self.text_cols_row, kind == "text")
        self.thumbs_box.setVisible(not words)
        self.top.setSizes({"text": [300, 0, 300, 500], "image": [500, 500, 0, 0]}.get(kind, [0, 0, 300, 700]))
        hints = {"image": IMAGE_HINT, "text": TEXT_HINT, "pairs": PAIRS_HINT, "triples": TRIPLES_HINT}
        self.path.setPlaceholderText(hints[kind])
        columns = {"pairs": ["Prompt", "Response"], "triples": ["Prompt", "Chosen", "Rejected"]}
        labels = columns.get(kind, ["Label", "Text (sample rows)"])
        self.samples.setColumnCount(len(labels))
        self.samples.setHorizontalHeaderLabels(labels)
        head = self.samples.horizontalHeader()
        for c in range(len(labels)):
            head.setSectionResizeMode(c, head.ResizeMode.Stretch if lm else head.ResizeMode.Interactive)
        self.samples_box.default = {
            "pairs": "Sample pairs (prompt and the answer to learn) appear here after the scan.",
            "triples": "Sample triples (prompt, the answer you prefer, the one you do not) appear here after the scan.",
        }.get(kind, "Sample rows (label and text) appear here after the scan.")
        self.lengths_box.default = (
            "Conversation lengths in tokens appear here after the scan; they set how long one training example may be."
            if lm
            else "Text lengths appear here after the scan; they set how many tokens the model reads."
        )

    def _split_labels(self) -> None:
        self.val_label.setText(f"{self.val.value()}%")
        self.test_label.setText(f"{self.test.value()}%")

    def refresh(self) -> None:
        d = self.state.project.data
        task = self.state.project.task.type
        self.kind.setCurrentText(kind_label(task))
        self._kind_changed()
        self.text_col.setText(d.text_column or "")
        self.label_col.setText(d.label_column or "")
        self.source.setCurrentText(d.source)
        self.path.setText("" if self.state.blank else d.tfds_name if d.source == "tfds" else (d.path or ""))
        self.val.setValue(round(d.val_fraction * 100))
        self.test.setValue(round(d.test_fraction * 100))
        self.seed.setValue(d.seed)
        self._split_labels()
        if self.state.scan_report is not None:
            self.show_report(self.state.scan_report)
        elif not (self.worker is not None and self.worker.isRunning()):
            self._show_empty()

    def _show_empty(self) -> None:
        self._show_empty_boxes(None)
        self.summary.setText(
            "No data yet. Choose a folder or a table above (or drop one here), then press Scan."
            if self.state.blank
            else "Press Scan to read your data."
        )

    def commit(self) -> None:
        src, text = self.source.currentText(), self.path.text().strip()
        if self.state.blank and not text:
            return  # nothing chosen yet: keep the placeholder project as it is
        if src != "tfds" and text:
            # A file is a table (CSV/TSV), a folder is a folder: no way to get this wrong.
            where = Path(text).expanduser()
            if not where.is_absolute() and self.state.path is not None:
                where = self.state.path.parent / where  # paths in a project file are relative to it
            src = source_kind(where, TaskType.sft if self.kind_key() in LM_KINDS else None)
            if self.kind_key() not in LM_KINDS and src == "pairs":
                src = "csv"
            self.source.setCurrentText(src)
        values = {
            "source": src,
            "val_fraction": self.val.value() / 100,
            "test_fraction": self.test.value() / 100,
            "seed": self.seed.value(),
        }
        values.update({"tfds_name": text, "path": None} if src == "tfds" else {"path": text or ".", "tfds_name": None})
        values.update(
            text_column=self.text_col.text().strip() or None, label_column=self.label_col.text().strip() or None
        )
        d = self.state.project.model_dump(mode="json")
        d["data"].update(values)
        task = self.state.project.task.type
        was, kind = task_kind(task), self.kind_key()
        if kind != was:  # another kind of data: that kind's task, backbone and plan (one rule, in the core)
            self.state.scan_report = None
            self.state.set_project(
                retarget(self.state.project.model_copy(update={"data": Data.model_validate(d["data"])}), kind)
            )
        else:
            self.state.set_dict(d)
        self.state.blank = False

    def browse(self) -> None:
        if self.kind_key() in LM_KINDS:
            what = "prompt, chosen and rejected answers" if self.kind_key() == "triples" else "prompt → response pairs"
            path, _ = QFileDialog.getOpenFileName(
                self, f"Choose {what}", "", "Pairs (*.jsonl *.csv *.tsv);;All files (*)"
            )
        elif self.source.currentText() == "csv":
            path, _ = QFileDialog.getOpenFileName(self, "Choose a CSV of path,label", "", "CSV (*.csv *.tsv)")
        else:
            path = QFileDialog.getExistingDirectory(self, "Choose a folder with one sub-folder per class")
        if path:
            self.path.setText(path)
            self.start_scan()

    def accept_path(self, path: Path, visible: bool) -> bool:
        """A folder or file dropped on the window while this step shows: use it and scan."""
        if not visible or path.suffix.lower() in (".yaml", ".yml"):
            return False
        try:
            task = guess_task(path)
            self.kind.setCurrentText(kind_label(task))
        except DataError as e:
            show_error(self, str(e))
            return True
        self.path.setText(str(path))
        self.start_scan()
        return True

    def dragEnterEvent(self, e) -> None:  # noqa: N802 - Qt API
        if e.mimeData().hasUrls():
            e.acceptProposedAction()

    def dropEvent(self, e) -> None:  # noqa: N802 - Qt API
        urls = [u.toLocalFile() for u in e.mimeData().urls() if u.isLocalFile()]
        if urls and self.accept_path(Path(urls[0]), True):
            e.acceptProposedAction()

    def scanning(self) -> bool:
        return self.worker is not None and self.worker.isRunning()

    def _scan_clicked(self) -> None:
        if self.scanning():
            self.worker.stop()
            self.summary.setText("Cancelling the scan…")
        else:
            self.start_scan()

    def start_scan(self) -> None:
        if self.state.blank and not self.path.text().strip():
            self.summary.setText(
                f"<span style='color:{BAD}'>Choose your data first</span>: type a path, press "
                "Browse…, or drop a folder or CSV on the window."
            )
            return
        try:
            self.commit()
        except Exception as e:
            show_error(self, str(e))
            return
        if self.scanning():
            return
        project, pfile = self.state.project, self.state.path
        self.worker = FunctionWorker(_scan, project, pfile, with_progress=True, with_stop=True)
        self.worker.progress.connect(self._progress)
        self.worker.done.connect(self._scanned)
        self.worker.failed.connect(self._failed)
        self.rate = Rate()
        self.progress.setVisible(True)
        self.progress.setMaximum(0)  # busy until the file list is known
        self.progress.setFormat("listing files…")
        self.scan_btn.setText("Cancel scan")
        self.state.scan_report = None
        self._show_empty_boxes("Scanning… results appear here when every file has been read.")
        self.summary.setText("Scanning… every file is decoded once so training never trips over a bad one.")
        self.worker.start()

    def _progress(self, done: int, total: int) -> None:
        self.progress.setMaximum(max(total, 1))
        self.progress.setValue(done)
        self.progress.setFormat(self.rate.text(done, total, "files"))

    def _scan_ended(self) -> None:
        self.progress.setVisible(False)
        self.scan_btn.setText("Scan")

    def _failed(self, msg: str, details: str) -> None:
        self._scan_ended()
        if "scan cancelled" in msg:
            self.summary.setText(f"Scan cancelled. {msg.split(': ', 1)[-1].capitalize()}. Press Scan to start again.")
            self._show_empty_boxes("The scan was cancelled; press Scan to read your data.")
            return
        self.summary.setText(f"<b>Scan failed:</b> {msg}")
        self._show_empty_boxes("Nothing to show: the scan failed (see the message above).")
        show_error(self, msg, details)

    def _show_empty_boxes(self, message: Optional[str]) -> None:
        for box in (self.chart_box, self.thumbs_box, self.lengths_box, self.samples_box, self.bad_box):
            box.show_empty(message)

    def _scanned(self, report) -> None:
        self._scan_ended()
        self.state.scan_report = report
        self.state.scanned.emit(report)
        self.show_report(report)

    def show_pairs(self, report: PairsReport | TriplesReport) -> None:
        """Pairs or preference triples: counts, token lengths, samples, every unusable line and repeat."""
        t, triples = report.tokens, isinstance(report, TriplesReport)
        noun = "prompt / chosen / rejected triples" if triples else "prompt → response pairs"
        lines = [
            f"<b>{len(report.pairs)}</b> usable {noun}; {len(report.problems)} unusable "
            f"(skipped), {sum(len(d) - 1 for d in report.duplicates)} repeats (used once)."
        ]
        if t.get("error"):
            lines.append(f"<span style='color:{WARN}'>⚠ token lengths unknown: {t['error']}</span>")
        elif t:
            lines.append(
                f"Conversations are {t['min']}–{t['max']} tokens (median {t['median']}); the model reads "
                f"at most {t['max_tokens']}."
            )
            if triples:
                lines.append(
                    "Median tokens: "
                    + ", ".join(f"{k} {t[k].get('median', 0)}" for k in ("prompt", "chosen", "rejected") if t.get(k))
                    + "."
                )
            if t["over_limit_lines"]:
                lines.append(
                    f"<span style='color:{WARN}'>⚠ {len(t['over_limit_lines'])} {'triple' if triples else 'pair'}(s) "
                    f"are longer and will be {'truncated' if self.state.project.data.too_long == 'truncate' else 'dropped'}: "
                    f"lines {', '.join(map(str, t['over_limit_lines'][:8]))}</span>"
                )
        if len(report.pairs) >= 2:
            lines.append("Looks good: press <b>Next</b> to choose the language model.")
        else:
            lines.append(
                f"<span style='color:{BAD}'>✗ at least 2 usable {'triples' if triples else 'pairs'} are needed</span>"
            )
        self.summary.setText("<br>".join(lines))
        if t.get("histogram"):
            self.lengths.set_counts(t["histogram"])
            self.lengths.setTitle(f"Tokens per conversation (limit {t['max_tokens']})")
            self.lengths_box.show_content()
        else:
            self.lengths_box.show_empty(
                "Token lengths need the model's tokenizer: install the model (Backbone step) and scan again."
            )
        self.samples.setRowCount(min(60, len(report.pairs)))
        for r, pr in enumerate(report.pairs[:60]):
            cells = [pr.prompt, pr.chosen, pr.rejected] if triples else [pr.prompt, pr.response]
            for c, text in enumerate(cells):
                self.samples.setItem(r, c, QTableWidgetItem(text.replace("\n", " ")[:300]))
        self.samples_box.show_content()
        bad = [(f"line {p['line']}", p["reason"]) for p in report.problems]
        again = (
            "the same prompt and answers again (used once)"
            if triples
            else "the same prompt and response again (used once)"
        )
        bad += [(f"lines {', '.join(map(str, d))}", again) for d in report.duplicates]
        if not bad:
            self.bad_box.show_empty("✓ Every line was usable: nothing skipped.")
        else:
            self.bad_box.show_content()
        self.bad.setRowCount(len(bad))
        for r, (where, why) in enumerate(bad):
            self.bad.setItem(r, 0, QTableWidgetItem(where))
            self.bad.setItem(r, 1, QTableWidgetItem(why))

    def show_report(self, report) -> None:
        if isinstance(report, (PairsReport, TriplesReport)):
            self.show_pairs(report)
            return
        unit = "texts" if report.kind == "text" else "images"
        lines = [
            f"<b>{len(report.examples)}</b> usable {unit} in <b>{len(report.classes)}</b> classes; "
            f"{len(report.bad)} unusable (skipped), {len(report.ignored)} ignored; "
            f"imbalance {report.imbalance}."
        ]
        lines += [f"<span style='color:{WARN}'>⚠ {w}</span>" for w in report.warnings]
        lines += [f"<span style='color:{BAD}'>✗ class '{c}' has no usable images</span>" for c in report.empty_classes]
        if not report.empty_classes and len(report.classes) >= 2:
            lines.append("Looks good: press <b>Next</b> to choose a backbone.")
        self.summary.setText("<br>".join(lines))
        self.chart.set_counts(report.counts)
        self.chart_box.show_content()
        if report.lengths:
            self.show_text(report)
            return
        rng = random.Random(0)
        by_class: dict[str, list[str]] = {}
        for ex in report.examples:
            by_class.setdefault(str(ex.label if not isinstance(ex.label, list) else ex.label[0]), []).append(ex.path)
        sample = []
        for c, paths in sorted(by_class.items()):
            sample += [(p, c) for p in rng.sample(paths, min(4, len(paths)))]
        self.thumbs.set_items(sample)
        (self.thumbs_box.show_content if sample else self.thumbs_box.show_empty)()
        self._fill_bad(report.bad + report.ignored)

    def show_text(self, report) -> None:
        L = report.lengths
        h = L["histogram"]
        mids = [f"{(a + b) / 2:.0f}" for a, b in zip(h["edges"][:-1], h["edges"][1:])]
        self.lengths.set_counts(dict(zip(mids, h["counts"])))
        self.lengths.setTitle(f"Words/text: p95 {L['p95_words']:.0f} → {L['suggested_sequence_length']} tokens")
        self.lengths_box.show_content()
        self.samples_box.show_content()
        rng = random.Random(0)
        rows = rng.sample(report.examples, min(60, len(report.examples)))
        self.samples.setRowCount(len(rows))
        for r, ex in enumerate(rows):
            self.samples.setItem(r, 0, QTableWidgetItem(str(ex.label)))
            self.samples.setItem(r, 1, QTableWidgetItem((ex.text or "").replace("\n", " ")[:300]))
        self._fill_bad(report.bad)

    def _fill_bad(self, rows: list) -> None:
        if not rows:
            self.bad_box.show_empty("✓ Every file was usable: nothing skipped.")
        else:
            self.bad_box.show_content()
        self.bad.setRowCount(len(rows))
        for r, b in enumerate(rows):
            self.bad.setItem(r, 0, QTableWidgetItem(b.path))
            self.bad.setItem(r, 1, QTableWidgetItem(b.reason))

    def validate(self) -> Optional[str]:
        rep = self.state.scan_report
        if rep is None:
            return (
                "Scan the data first (press Scan)."
                if not self.state.blank
                else "Choose your data first: type a path, press Browse…, or drop a folder or CSV on the window."
            )
        try:
            rep.require_usable()
        except DataError as e:
            return str(e)
        return None
