"""Step 2 — Backbone: a searchable catalog table, input size, weights import."""
from __future__ import annotations

from typing import Optional

from PySide6.QtCore import QSortFilterProxyModel, Qt
from PySide6.QtGui import QStandardItem, QStandardItemModel
from PySide6.QtWidgets import (QComboBox, QFileDialog, QFormLayout, QHBoxLayout, QHeaderView, QLabel, QLineEdit,
                               QPushButton, QSpinBox, QTableView, QVBoxLayout)

from tlapp.backbones.catalog import all_entries, check_backbone, get_entry
from tlapp.backbones.weights import import_weights, offline_status
from tlapp.base.errors import TlappError
from tlapp.config import Backbone

from ..widgets import show_error
from ..workers import FunctionWorker
from .base import WizardPage

COLUMNS = ["Name", "Family", "Params (M)", "Input", "Scaling", "Offline", "Licence"]


class BackbonePage(WizardPage):
    title = "Backbone"

    def __init__(self, state) -> None:
        super().__init__(state)
        self.worker: Optional[FunctionWorker] = None
        self.search = QLineEdit()
        self.search.setPlaceholderText("Search backbones (name or family)…")
        self.model = QStandardItemModel(0, len(COLUMNS))
        self.model.setHorizontalHeaderLabels(COLUMNS)
        self.proxy = QSortFilterProxyModel()
        self.proxy.setSourceModel(self.model)
        self.proxy.setFilterCaseSensitivity(Qt.CaseSensitivity.CaseInsensitive)
        self.proxy.setFilterKeyColumn(-1)
        self.search.textChanged.connect(self.proxy.setFilterFixedString)
        self.table = QTableView()
        self.table.setModel(self.proxy)
        self.table.setSortingEnabled(True)
        self.table.sortByColumn(0, Qt.SortOrder.AscendingOrder)
        self.table.setSelectionBehavior(QTableView.SelectionBehavior.SelectRows)
        self.table.setSelectionMode(QTableView.SelectionMode.SingleSelection)
        self.table.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
        self.table.verticalHeader().setVisible(False)
        self.table.selectionModel().selectionChanged.connect(self._selected)
        self.size = QSpinBox()
        self.size.setRange(16, 1024)
        self.size.setMaximumWidth(120)
        self.size.setSingleStep(16)
        self.weights = QComboBox()
        self.weights.setEditable(True)
        self.weights.addItems(["imagenet", "none"])
        self.alpha = QComboBox()
        self.alpha.addItems(["(default)", "0.25", "0.35", "0.5", "0.75", "1.0", "1.3", "1.4"])
        self.info = QLabel()
        self.info.setWordWrap(True)
        imp = QPushButton("Import weights…")
        imp.clicked.connect(self.import_weights)
        form = QFormLayout()
        self.size_label = QLabel("Input size")
        form.addRow(self.size_label, self.size)
        form.addRow("Weights", self.weights)
        form.addRow("Width (alpha)", self.alpha)
        row = QHBoxLayout()
        row.addLayout(form, 1)
        row.addWidget(imp, 0, Qt.AlignmentFlag.AlignTop)
        lay = QVBoxLayout(self)
        lay.addWidget(self.search)
        lay.addWidget(self.table, 1)
        lay.addWidget(self.info)
        lay.addLayout(row)
        self.fill()

    def fill(self) -> None:
        self.model.setRowCount(0)
        self.modality = "text" if self.state.project.task.type.is_text else "image"
        for e in all_entries(include_test=True, modality=self.modality):
            cells = [e.name, e.family, f"{e.params_m:.1f}", str(e.default_size), e.preprocessing,
                     "✓" if offline_status(e.name) else "✗", e.licence]
            items = [QStandardItem(c) for c in cells]
            for it in items:
                it.setEditable(False)
                it.setToolTip(e.notes or e.name)
            self.model.appendRow(items)

    def selected_name(self) -> Optional[str]:
        rows = self.table.selectionModel().selectedRows()
        return self.proxy.index(rows[0].row(), 0).data() if rows else None

    def select(self, name: str) -> None:
        for r in range(self.proxy.rowCount()):
            if self.proxy.index(r, 0).data() == name:
                self.table.selectRow(r)
                self.table.scrollTo(self.proxy.index(r, 0))
                return

    def _selected(self) -> None:
        name = self.selected_name()
        if not name:
            return
        e = get_entry(name)
        if self.size.value() == 0 or self.state.project.backbone.name != name:
            self.size.setValue(e.default_size)
        self.alpha.setEnabled("alpha" in e.options)
        self.info.setText(f"<b>{e.name}</b> — {e.family}, {e.params_m:.1f} M parameters, expects "
                          f"'{e.preprocessing}' scaling (built into the model). {e.notes}")

    def refresh(self) -> None:
        b = self.state.project.backbone
        want = "text" if self.state.project.task.type.is_text else "image"
        if want != getattr(self, "modality", None):
            self.fill()
        self.size_label.setText("Sequence length" if want == "text" else "Input size")
        self.select(b.name)
        self.size.setValue((b.sequence_length if want == "text" else b.image_size) or get_entry(b.name).default_size)
        self.weights.setCurrentText(b.weights)
        self.alpha.setCurrentText(str(b.options.get("alpha", "(default)")))

    def _config(self, name: str) -> Backbone:
        """The backbone section this step's controls describe."""
        opts = dict(self.state.project.backbone.options) if name == self.state.project.backbone.name else {}
        if self.alpha.isEnabled() and self.alpha.currentText() != "(default)":
            opts["alpha"] = float(self.alpha.currentText())
        else:
            opts.pop("alpha", None)
        size = {"sequence_length": self.size.value()} if get_entry(name).modality == "text" \
            else {"image_size": self.size.value()}
        return Backbone(name=name, weights=self.weights.currentText().strip() or "imagenet", options=opts, **size)

    def commit(self) -> None:
        cfg = self._config(self.selected_name() or self.state.project.backbone.name)
        self.state.update("backbone", **cfg.model_dump(mode="json"))

    def validate(self) -> Optional[str]:
        name = self.selected_name()
        if not name:
            return "Choose a backbone."
        try:
            check_backbone(self._config(name))
        except (TlappError, ValueError) as err:
            return str(err).splitlines()[0]
        return None

    def import_weights(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Import weights", "",
                                              "Weights (*.h5 *.keras *.pth *.bin *.pt);;All files (*)")
        if not path:
            return
        self.worker = FunctionWorker(import_weights, path)
        self.worker.done.connect(lambda res: (self.info.setText(f"Imported {res.kind} → {res.destination}"), self.fill(),
                                              self.select(self.selected_name() or "")))
        self.worker.failed.connect(lambda m, d: show_error(self, m, d))
        self.info.setText("Importing…")
        self.worker.start()
