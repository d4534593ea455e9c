"""Step 1 — Data: choose a folder / CSV / TFDS name, scan in the background,
see class counts, sample thumbnails, unusable files and the split."""
from __future__ import annotations

import random
from pathlib import Path
from typing import Optional

from PySide6.QtCore import Qt
from PySide6.QtWidgets import (QComboBox, QFileDialog, QFormLayout, QHBoxLayout, QLabel, QLineEdit, QProgressBar,
                               QPushButton, QSlider, QSpinBox, QSplitter, QTableWidget, QTableWidgetItem,
                               QVBoxLayout, QWidget)

from tlapp.base.errors import DataError
from tlapp.config import DEFAULT_TEXT_BACKBONE
from tlapp.data.sources import scan_project_data
from tlapp.data.starter import source_kind

from ..workers import FunctionWorker
from ..widgets import BarChart, ThumbGrid, show_error
from .base import WizardPage


class DataPage(WizardPage):
    title = "Data"

    def __init__(self, state) -> None:
        super().__init__(state)
        self.worker: Optional[FunctionWorker] = None
        self.kind = QComboBox()
        self.kind.addItems(["Images", "Text"])
        self.kind.setToolTip("What the examples are: image files, or texts (CSV/TSV rows or .txt files)")
        self.source = QComboBox()
        self.source.addItems(["folder", "csv", "tfds"])
        self.text_col, self.label_col = QLineEdit(), QLineEdit()
        self.text_col.setPlaceholderText("text column (default: text)")
        self.label_col.setPlaceholderText("label column (default: label)")
        self.path = QLineEdit()
        self.path.setPlaceholderText("Folder with one sub-folder per class, or a CSV of path,label")
        browse = QPushButton("Browse…")
        browse.clicked.connect(self.browse)
        self.scan_btn = QPushButton("Scan")
        self.scan_btn.clicked.connect(self.start_scan)
        row = QHBoxLayout()
        row.addWidget(self.kind)
        row.addWidget(self.source)
        row.addWidget(self.path, 1)
        row.addWidget(browse)
        row.addWidget(self.scan_btn)
        self.progress = QProgressBar()
        self.progress.setVisible(False)
        self.summary = QLabel("Pick your data to start.")
        self.summary.setWordWrap(True)
        self.val = self._slider(0, 50)
        self.test = self._slider(0, 40)
        self.val_label, self.test_label = QLabel(), QLabel()
        self.seed = QSpinBox()
        self.seed.setRange(0, 2**31 - 1)
        split = QFormLayout()
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
        self.lengths = BarChart()
        self.samples = QTableWidget(0, 2)
        self.samples.setHorizontalHeaderLabels(["Label", "Text (sample rows)"])
        self.samples.horizontalHeader().setStretchLastSection(True)
        self.samples.setEditTriggers(QTableWidget.EditTrigger.NoEditTriggers)
        self.kind.currentTextChanged.connect(self._kind_changed)
        self.chart = BarChart()
        self.thumbs = ThumbGrid(64)
        self.bad = QTableWidget(0, 2)
        self.bad.setHorizontalHeaderLabels(["Skipped file", "Reason"])
        self.bad.horizontalHeader().setStretchLastSection(True)
        self.bad.setEditTriggers(QTableWidget.EditTrigger.NoEditTriggers)
        views = QSplitter(Qt.Orientation.Vertical)
        top = self.top = QSplitter(Qt.Orientation.Horizontal)
        top.addWidget(self.chart)
        top.addWidget(self.thumbs)
        top.addWidget(self.lengths)
        top.addWidget(self.samples)
        views.addWidget(top)
        views.addWidget(self.bad)
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

    def is_text(self) -> bool:
        return self.kind.currentText() == "Text"

    def _kind_changed(self) -> None:
        text = self.is_text()
        for w in (self.lengths, self.samples, self.text_col, self.label_col):
            w.setVisible(text)
        self.thumbs.setVisible(not text)
        self.top.setSizes([300, 0, 300, 500] if text else [500, 500, 0, 0])
        self.path.setPlaceholderText("CSV/TSV with text and label columns, or a folder of .txt files per class"
                                     if text else "Folder with one sub-folder per class, or a CSV of path,label")

    def _split_labels(self) -> None:
        self.val_label.setText(f"{self.val.value()}%")
        self.test_label.setText(f"{self.test.value()}%")

    def refresh(self) -> None:
        d = self.state.project.data
        self.kind.setCurrentText("Text" if self.state.project.task.type.is_text else "Images")
        self._kind_changed()
        self.text_col.setText(d.text_column or "")
        self.label_col.setText(d.label_column or "")
        self.source.setCurrentText(d.source)
        self.path.setText(d.tfds_name if d.source == "tfds" else (d.path or ""))
        self.val.setValue(round(d.val_fraction * 100))
        self.test.setValue(round(d.test_fraction * 100))
        self.seed.setValue(d.seed)
        self._split_labels()
        if self.state.scan_report is not None:
            self.show_report(self.state.scan_report)

    def commit(self) -> None:
        src, text = self.source.currentText(), self.path.text().strip()
        if src != "tfds" and text:
            # A file is a table (CSV/TSV), a folder is a folder: no way to get this wrong.
            where = Path(text).expanduser()
            if not where.is_absolute() and self.state.path is not None:
                where = self.state.path.parent / where  # paths in a project file are relative to it
            src = source_kind(where)
            self.source.setCurrentText(src)
        values = {"source": src, "val_fraction": self.val.value() / 100, "test_fraction": self.test.value() / 100,
                  "seed": self.seed.value()}
        values.update({"tfds_name": text, "path": None} if src == "tfds" else {"path": text or ".", "tfds_name": None})
        values.update(text_column=self.text_col.text().strip() or None, label_column=self.label_col.text().strip() or None)
        d = self.state.project.model_dump(mode="json")
        d["data"].update(values)
        was_text = self.state.project.task.type.is_text
        if self.is_text() != was_text:
            d["task"]["type"] = "text_classification" if self.is_text() else "image_classification"
            d["backbone"] = {"name": DEFAULT_TEXT_BACKBONE, "weights": "pretrained"} if self.is_text() else {}
            self.state.scan_report = None
        self.state.set_dict(d)

    def browse(self) -> None:
        if self.source.currentText() == "csv":
            path, _ = QFileDialog.getOpenFileName(self, "Choose a CSV of path,label", "", "CSV (*.csv *.tsv)")
        else:
            path = QFileDialog.getExistingDirectory(self, "Choose a folder with one sub-folder per class")
        if path:
            self.path.setText(path)
            self.start_scan()

    def start_scan(self) -> None:
        try:
            self.commit()
        except Exception as e:
            show_error(self, str(e))
            return
        if self.worker is not None and self.worker.isRunning():
            return
        project, pfile = self.state.project, self.state.path

        self.worker = FunctionWorker(scan_project_data, project, pfile, with_progress=True)
        self.worker.progress.connect(self._progress)
        self.worker.done.connect(self._scanned)
        self.worker.failed.connect(self._failed)
        self.progress.setVisible(True)
        self.progress.setValue(0)
        self.scan_btn.setEnabled(False)
        self.summary.setText("Scanning… every file is decoded once so training never trips over a bad one.")
        self.worker.start()

    def _progress(self, done: int, total: int) -> None:
        self.progress.setMaximum(max(total, 1))
        self.progress.setValue(done)

    def _failed(self, msg: str, details: str) -> None:
        self.progress.setVisible(False)
        self.scan_btn.setEnabled(True)
        self.summary.setText(f"<b>Scan failed:</b> {msg}")
        show_error(self, msg, details)

    def _scanned(self, report) -> None:
        self.progress.setVisible(False)
        self.scan_btn.setEnabled(True)
        self.state.scan_report = report
        self.state.scanned.emit(report)
        self.show_report(report)

    def show_report(self, report) -> None:
        unit = "texts" if report.kind == "text" else "images"
        lines = [f"<b>{len(report.examples)}</b> usable {unit} in <b>{len(report.classes)}</b> classes; "
                 f"{len(report.bad)} unusable (skipped), {len(report.ignored)} ignored; "
                 f"imbalance {report.imbalance}."]
        lines += [f"<span style='color:#c80'>⚠ {w}</span>" for w in report.warnings]
        lines += [f"<span style='color:#c00'>✗ class '{c}' has no usable images</span>" for c in report.empty_classes]
        self.summary.setText("<br>".join(lines))
        self.chart.set_counts(report.counts)
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
        self._fill_bad(report.bad + report.ignored)

    def show_text(self, report) -> None:
        L = report.lengths
        h = L["histogram"]
        mids = [f"{(a + b) / 2:.0f}" for a, b in zip(h["edges"][:-1], h["edges"][1:])]
        self.lengths.set_counts(dict(zip(mids, h["counts"])))
        self.lengths.setTitle(f"Words/text: p95 {L['p95_words']:.0f} → {L['suggested_sequence_length']} tokens")
        rng = random.Random(0)
        rows = rng.sample(report.examples, min(60, len(report.examples)))
        self.samples.setRowCount(len(rows))
        for r, ex in enumerate(rows):
            self.samples.setItem(r, 0, QTableWidgetItem(str(ex.label)))
            self.samples.setItem(r, 1, QTableWidgetItem((ex.text or "").replace("\n", " ")[:300]))
        self._fill_bad(report.bad)

    def _fill_bad(self, rows: list) -> None:
        self.bad.setRowCount(len(rows))
        for r, b in enumerate(rows):
            self.bad.setItem(r, 0, QTableWidgetItem(b.path))
            self.bad.setItem(r, 1, QTableWidgetItem(b.reason))

    def validate(self) -> Optional[str]:
        rep = self.state.scan_report
        if rep is None:
            return "Scan the data first (press Scan)."
        try:
            rep.require_usable()
        except DataError as e:
            return str(e)
        return None
