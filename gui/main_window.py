"""The main window: a sidebar of steps, the pages, Back/Next, File menu and
"Copy CLI command". Only this thread touches widgets; training events arrive
as signals from :class:`gui.workers.TrainingProcess`."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Optional

from PySide6.QtCore import QSettings
from PySide6.QtGui import QAction, QGuiApplication, QKeySequence
from PySide6.QtWidgets import (QFileDialog, QHBoxLayout, QLabel, QListWidget, QMainWindow, QMessageBox, QPushButton,
                               QStackedWidget, QVBoxLayout, QWidget)

from .pages.backbone_page import BackbonePage
from .pages.base import WizardPage
from .pages.data_page import DataPage
from .pages.evaluate_page import EvaluatePage
from .pages.export_page import ExportPage
from .pages.head_page import HeadPage
from .pages.layers_page import LayersPage
from .pages.training_page import TrainingPage
from .state import ProjectState, default_project
from .widgets import error_text, show_error
from .workers import TrainingProcess

MAX_RECENT = 8


class MainWindow(QMainWindow):
    def __init__(self, trainer_factory: Callable[[], Any] = TrainingProcess, settings: Optional[QSettings] = None) -> None:
        super().__init__()
        self.settings = settings or QSettings("tlapp", "tlapp")
        self.state = ProjectState()
        self.pages: list[WizardPage] = [
            DataPage(self.state), BackbonePage(self.state), LayersPage(self.state), HeadPage(self.state),
            TrainingPage(self.state, trainer_factory), EvaluatePage(self.state), ExportPage(self.state)]
        self.training: TrainingPage = self.pages[4]  # type: ignore[assignment]
        self.sidebar = QListWidget()
        self.sidebar.setFixedWidth(170)
        self.sidebar.addItems([f"{i + 1}. {p.title}" for i, p in enumerate(self.pages)])
        self.sidebar.currentRowChanged.connect(self._sidebar_clicked)
        self.stack = QStackedWidget()
        for p in self.pages:
            self.stack.addWidget(p)
        self.heading = QLabel()
        self.heading.setStyleSheet("font-size: 16pt; font-weight: 600;")
        self.problem = QLabel()
        self.problem.setStyleSheet("color: #c62828;")
        self.problem.setWordWrap(True)
        self.back_btn, self.next_btn = QPushButton("← Back"), QPushButton("Next →")
        self.back_btn.clicked.connect(self.back)
        self.next_btn.clicked.connect(self.next)
        self.back_btn.setShortcut(QKeySequence("Alt+Left"))
        self.next_btn.setShortcut(QKeySequence("Alt+Right"))
        nav = QHBoxLayout()
        nav.addWidget(self.problem, 1)
        nav.addWidget(self.back_btn)
        nav.addWidget(self.next_btn)
        right = QVBoxLayout()
        right.addWidget(self.heading)
        right.addWidget(self.stack, 1)
        right.addLayout(nav)
        central = QWidget()
        lay = QHBoxLayout(central)
        lay.addWidget(self.sidebar)
        lay.addLayout(right, 1)
        self.setCentralWidget(central)
        self._menus()
        self.state.changed.connect(self._title)
        self.state.run_finished.connect(lambda _: self.pages[5].refresh())
        self.current = 0
        self.resize(1200, 820)
        self.setMinimumSize(900, 640)
        geo = self.settings.value("geometry")
        if geo is not None:
            self.restoreGeometry(geo)
        self.go(0, check=False)
        self._title()

    # ---- menus -------------------------------------------------------------
    def _menus(self) -> None:
        m = self.menuBar().addMenu("&File")
        for text, key, fn in (("&New project", QKeySequence.StandardKey.New, self.new_project),
                              ("&Open project…", QKeySequence.StandardKey.Open, self.open_dialog),
                              ("&Save", QKeySequence.StandardKey.Save, self.save),
                              ("Save &As…", QKeySequence.StandardKey.SaveAs, self.save_as)):
            a = QAction(text, self)
            a.setShortcut(key)
            a.triggered.connect(fn)
            m.addAction(a)
        self.recent_menu = m.addMenu("Open &recent")
        self._fill_recent()
        m.addSeparator()
        q = QAction("&Quit", self)
        q.setShortcut(QKeySequence.StandardKey.Quit)
        q.triggered.connect(self.close)
        m.addAction(q)
        e = self.menuBar().addMenu("&Project")
        self.copy_cli = QAction("&Copy CLI command", self)
        self.copy_cli.setShortcut(QKeySequence("Ctrl+Shift+C"))
        self.copy_cli.triggered.connect(self.copy_cli_command)
        e.addAction(self.copy_cli)

    def _fill_recent(self) -> None:
        self.recent_menu.clear()
        for path in self.recent():
            a = QAction(path, self)
            a.triggered.connect(lambda _=False, p=path: self.open(Path(p)))
            self.recent_menu.addAction(a)
        self.recent_menu.setEnabled(bool(self.recent()))

    def recent(self) -> list[str]:
        v = self.settings.value("recent", [])
        return [v] if isinstance(v, str) else list(v or [])

    def _remember(self, path: Path) -> None:
        items = [str(path)] + [p for p in self.recent() if p != str(path)]
        self.settings.setValue("recent", items[:MAX_RECENT])
        self._fill_recent()

    # ---- navigation --------------------------------------------------------
    def go(self, index: int, check: bool = True) -> bool:
        if check and index > self.current:
            page = self.pages[self.current]
            problem = page.validate()
            if not problem:
                try:
                    page.commit()
                except Exception as e:
                    problem = error_text(e)
            if problem:
                self.problem.setText(problem)
                self.sidebar.blockSignals(True)
                self.sidebar.setCurrentRow(self.current)
                self.sidebar.blockSignals(False)
                return False
        elif check and index != self.current:
            try:
                self.pages[self.current].commit()
            except Exception:
                pass  # going back never loses the page: its widgets keep the text
        self.problem.setText("")
        self.current = index
        self.stack.setCurrentIndex(index)
        self.sidebar.blockSignals(True)
        self.sidebar.setCurrentRow(index)
        self.sidebar.blockSignals(False)
        self.heading.setText(f"Step {index + 1} of {len(self.pages)} — {self.pages[index].title}")
        self.pages[index].refresh()
        self.back_btn.setEnabled(index > 0)
        self.next_btn.setEnabled(index < len(self.pages) - 1)
        return True

    def next(self) -> bool:
        return self.go(min(self.current + 1, len(self.pages) - 1))

    def back(self) -> bool:
        return self.go(max(self.current - 1, 0))

    def _sidebar_clicked(self, row: int) -> None:
        # Jumping forward validates every step in between.
        while self.current < row:
            if not self.next():
                return
        if row < self.current:
            self.go(row)

    # ---- files -------------------------------------------------------------
    def _title(self) -> None:
        name = self.state.path.name if self.state.path else "untitled"
        self.setWindowTitle(f"tlapp — {name}{' *' if self.state.dirty else ''}")

    def _confirm_discard(self) -> bool:
        if not self.state.dirty:
            return True
        r = QMessageBox.question(self, "tlapp", "Discard unsaved changes to the project?")
        return r == QMessageBox.StandardButton.Yes

    def new_project(self) -> None:
        if not self._confirm_discard():
            return
        self.state.project, self.state.path, self.state.dirty = default_project(), None, False
        self.state.scan_report, self.state.run_dir = None, None
        self.state.changed.emit()
        self.go(0, check=False)

    def open_dialog(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Open project", "", "tlapp project (*.yaml *.yml)")
        if path:
            self.open(Path(path))

    def open(self, path: Path) -> bool:
        try:
            self.state.load(path)
        except Exception as e:
            show_error(self, error_text(e))
            return False
        self._remember(path)
        self.go(0, check=False)
        return True

    def save(self) -> bool:
        if self.state.path is None:
            return self.save_as()
        return self._save_to(self.state.path)

    def save_as(self) -> bool:
        path, _ = QFileDialog.getSaveFileName(self, "Save project", "project.yaml", "tlapp project (*.yaml)")
        return self._save_to(Path(path)) if path else False

    def _save_to(self, path: Path) -> bool:
        try:
            self.pages[self.current].commit()
            self.state.save(path)
        except Exception as e:
            show_error(self, error_text(e))
            return False
        self._remember(path)
        return True

    def copy_cli_command(self) -> str:
        cmd = self.state.cli_command()
        if self.state.dirty or self.state.path is None:
            cmd += "   # save the project first (File > Save)"
        QGuiApplication.clipboard().setText(cmd)
        self.statusBar().showMessage(f"Copied: {cmd}", 5000)
        return cmd

    # ---- closing -----------------------------------------------------------
    def closeEvent(self, event) -> None:  # noqa: N802 - Qt API
        if self.training.is_running():
            r = QMessageBox.question(self, "tlapp", "Training is running. Stop it and quit?\n"
                                     "(The last checkpoint is kept; you can resume later.)")
            if r != QMessageBox.StandardButton.Yes:
                event.ignore()
                return
            self.training.cancel()
            self.training.trainer.wait(120)
        self.settings.setValue("geometry", self.saveGeometry())
        event.accept()
