"""The Evaluate step's "Label next" tab: which unlabeled images (or texts) to label first, and a drag (or a
click) that files each into a class.

The ranking is :func:`tlapp.deploy.suggest.suggest` (the run's own model: uncertain and diverse), run in a
worker with progress and Cancel. Filing an image copies it into the data folder's class folder; the
original stays where it was. Filing a text appends a ``text,label`` row to the project's CSV (written
whole, atomically). The next scan picks either up.
"""

from __future__ import annotations

import csv
import io
import shutil
from pathlib import Path
from typing import Any, Optional

from PySide6.QtCore import QSize, Qt
from PySide6.QtGui import QIcon
from PySide6.QtWidgets import (
    QFileDialog,
    QHBoxLayout,
    QLabel,
    QListWidget,
    QListWidgetItem,
    QProgressBar,
    QPushButton,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)

from tlapp.base.fsutil import atomic_write_text
from tlapp.config import resolve_data_path
from tlapp.deploy.suggest import suggest

from ..widgets import thumbnail
from ..workers import FunctionWorker

ROLE = Qt.ItemDataRole.UserRole


class ClassTarget(QPushButton):
    """A class to file suggestions into: drop items on it, or select them and click it."""

    def __init__(self, name: str, panel: "LabelNextPanel") -> None:
        super().__init__(name)
        self.name, self.panel = name, panel
        self.setAcceptDrops(True)
        self.setToolTip(f"Drop suggestions here (or select them and click) to label them '{name}'")
        self.clicked.connect(lambda: panel.file_selected(name))

    def dragEnterEvent(self, event: Any) -> None:  # noqa: N802  (Qt's name)
        if event.source() is self.panel.list:
            event.acceptProposedAction()

    def dropEvent(self, event: Any) -> None:  # noqa: N802
        self.panel.file_selected(self.name)
        event.acceptProposedAction()


class LabelNextPanel(QWidget):
    def __init__(self, state) -> None:
        super().__init__()
        self.state = state
        self.run: Optional[Path] = None
        self.worker: Optional[FunctionWorker] = None
        self.text = False
        self.intro = QLabel(
            "Choose a folder of unlabeled images (or a .txt/.csv of texts): the run's model ranks them by how much "
            "labeling each would help — the ones it is least sure of, and not near-copies of each other."
        )
        self.intro.setWordWrap(True)
        self.choose = QPushButton("Unlabeled examples…")
        self.choose.clicked.connect(self._choose)
        self.count = QSpinBox()
        self.count.setRange(1, 500)
        self.count.setValue(20)
        self.count.setToolTip("How many to suggest")
        self.cancel = QPushButton("Cancel")
        self.cancel.setEnabled(False)
        self.cancel.clicked.connect(self._cancel)
        self.bar = QProgressBar()
        self.bar.setVisible(False)
        self.list = QListWidget()
        self.list.setObjectName("labelNext")
        self.list.setViewMode(QListWidget.ViewMode.IconMode)
        self.list.setIconSize(QSize(72, 72))
        self.list.setResizeMode(QListWidget.ResizeMode.Adjust)
        self.list.setSelectionMode(QListWidget.SelectionMode.ExtendedSelection)
        self.list.setDragEnabled(True)
        self.list.setMinimumHeight(110)
        self.targets = QHBoxLayout()
        self.status = QLabel("")
        self.status.setWordWrap(True)
        row = QHBoxLayout()
        row.addWidget(self.choose)
        row.addWidget(QLabel("How many"))
        row.addWidget(self.count)
        row.addWidget(self.cancel)
        row.addWidget(self.bar, 1)
        row.addStretch(1)
        lay = QVBoxLayout(self)
        lay.addWidget(self.intro)
        lay.addLayout(row)
        lay.addWidget(self.list, 1)
        lay.addLayout(self.targets)
        lay.addWidget(self.status)

    def show_run(self, run: Optional[Path], classes: list[str], text: bool) -> None:
        self.run, self.text = run, text
        self.choose.setEnabled(run is not None and bool(classes))
        self.list.clear()
        while self.targets.count():
            w = self.targets.takeAt(0).widget()
            if w is not None:  # off the panel now: a widget only scheduled for deletion still paints
                w.setParent(None)
                w.deleteLater()
        if classes:
            self.targets.addWidget(QLabel("Label as:"))
        for c in classes:
            self.targets.addWidget(ClassTarget(c, self))
        self.targets.addStretch(1)

    def _choose(self) -> None:
        if self.text:
            path, _ = QFileDialog.getOpenFileName(self, "Unlabeled texts", "", "Texts (*.txt *.csv)")
        else:
            path = QFileDialog.getExistingDirectory(self, "Folder of unlabeled images")
        if path:
            self.start(path, self.count.value())

    def start(self, source: str, n: int) -> None:
        if self.run is None:
            return
        self.list.clear()
        self.status.setText(f"Ranking {source} with the run's model…")
        self.bar.setVisible(True)
        self.bar.setValue(0)
        self.cancel.setEnabled(True)
        self.worker = FunctionWorker(suggest, self.run, Path(source), n, with_progress=True, with_stop=True)
        self.worker.progress.connect(lambda d, t: (self.bar.setMaximum(max(t, 1)), self.bar.setValue(d)))
        self.worker.done.connect(self._show)
        self.worker.failed.connect(lambda msg, _details: self._end(msg))
        self.worker.start()

    def _cancel(self) -> None:
        if self.worker is not None:
            self.worker.stop()

    def _end(self, message: str) -> None:
        self.bar.setVisible(False)
        self.cancel.setEnabled(False)
        self.status.setText(message)

    def _show(self, result: Any) -> None:
        self.list.setViewMode(QListWidget.ViewMode.ListMode if self.text else QListWidget.ViewMode.IconMode)
        for it in result.items:
            what = it.get("text") or it["path"]
            caption = f"#{it['rank']} {it['predicted']}? (margin {it['margin']:.2f})"
            item = QListWidgetItem(f"{caption}  {what[:140]}" if self.text else caption)
            item.setData(ROLE, what)
            item.setToolTip(what)
            if not self.text:
                item.setIcon(QIcon(thumbnail(what, 72)))
            self.list.addItem(item)
        skipped = f"; {len(result.skipped)} file(s) skipped (not images tlapp reads)" if result.skipped else ""
        self._end(
            f"{len(result.items)} of {result.unlabeled} unlabeled examples, the most useful to label first{skipped}. "
            "Drag one onto a class (or select and click the class): images are copied, the originals stay."
        )

    def file_selected(self, label: str) -> None:
        done = [self.copy_to(item, label) for item in list(self.list.selectedItems())]
        if done:
            self.status.setText(f"{len(done)} copied into '{label}' (the originals stay where they were)")

    def copy_to(self, item: QListWidgetItem, label: str) -> Path:
        """File one suggestion under ``label``: an image copied into the class folder, a text appended to the
        CSV. Returns where it went."""
        what = item.data(ROLE)
        data = Path(resolve_data_path(self.state.project, self.state.path) or self.state.project.data.path or ".")
        if self.text:
            dest = data
            buf = io.StringIO()
            csv.writer(buf).writerow([what, label])
            atomic_write_text(dest, dest.read_text(encoding="utf-8").rstrip("\n") + "\n" + buf.getvalue())
        else:
            dest = data / label / Path(what).name
            stem, n = dest.stem, 1
            while dest.exists():  # never overwrite a file the person already has
                dest = dest.with_name(f"{stem}-{n}{dest.suffix}")
                n += 1
            dest.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(what, dest)
        self.list.takeItem(self.list.row(item))
        self.status.setText(f"copied into '{label}': {dest} (the original stays)")
        return dest
