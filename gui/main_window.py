"""The main window: the start page, then the wizard (a sidebar of steps, the
pages, Back/Next), the File menu, drag and drop, and "Copy CLI command".
Only this thread touches widgets; training events arrive as signals from
:class:`gui.workers.TrainingProcess`."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Callable, Optional

from PySide6.QtCore import QSettings, QSize
from PySide6.QtGui import QAction, QGuiApplication, QKeySequence, QShortcut
from PySide6.QtWidgets import (
    QFileDialog,
    QHBoxLayout,
    QLabel,
    QListWidget,
    QListWidgetItem,
    QMainWindow,
    QMessageBox,
    QPushButton,
    QSplitter,
    QStackedWidget,
    QVBoxLayout,
    QWidget,
)

from tlapp.base.errors import DataError
from tlapp.base.paths import projects_dir
from tlapp.config import TaskType, load_project
from tlapp.data.starter import guess_task, source_kind, starter_project
from tlapp.deploy.summary import latest_run, summarize_run
from tlapp.rundir import RunDir

from .pages.backbone_page import BackbonePage
from .pages.base import WizardPage
from .pages.data_page import DataPage
from .pages.evaluate_page import EvaluatePage
from .pages.export_page import ExportPage
from .pages.head_page import HeadPage
from .pages.layers_page import LayersPage
from .pages.training_page import TrainingPage
from .state import ProjectState
from .theme import MARGIN, icon, muted_color
from .welcome import RecentEntry, WelcomePage
from .widgets import error_text, show_error
from .workers import FunctionWorker, TrainingProcess

MAX_RECENT = 8
STEP_ICONS = ["data", "backbone", "layers", "head", "training", "evaluate", "export"]
EVALUATE = 5


class MainWindow(QMainWindow):
    def __init__(
        self, trainer_factory: Callable[[], Any] = TrainingProcess, settings: Optional[QSettings] = None
    ) -> None:
        super().__init__()
        self.settings = settings or QSettings("tlapp", "tlapp")
        self.setWindowIcon(icon("app"))
        self.setAcceptDrops(True)
        self.state = ProjectState()
        self.pages: list[WizardPage] = [
            DataPage(self.state),
            BackbonePage(self.state),
            LayersPage(self.state),
            HeadPage(self.state),
            TrainingPage(self.state, trainer_factory),
            EvaluatePage(self.state),
            ExportPage(self.state),
        ]
        self.training: TrainingPage = self.pages[4]  # type: ignore[assignment]
        self.sidebar = QListWidget()
        self.sidebar.setFixedWidth(180)
        self.sidebar.setIconSize(QSize(20, 20))
        self.sidebar.setSpacing(2)
        for i, (p, name) in enumerate(zip(self.pages, STEP_ICONS)):
            item = QListWidgetItem(icon(name), f"{i + 1}. {p.title}")
            item.setToolTip(p.intro)
            self.sidebar.addItem(item)
        self.sidebar.currentRowChanged.connect(self._sidebar_clicked)
        self.stack = QStackedWidget()
        for p in self.pages:
            self.stack.addWidget(p)
        self.heading = QLabel()
        self.heading.setStyleSheet("font-size: 16pt; font-weight: 600;")
        self.intro = QLabel()
        self.intro.setObjectName("stepIntro")
        self.intro.setWordWrap(True)
        self.intro.setStyleSheet(f"color: {muted_color().name()};")
        self.problem = QLabel()
        self.problem.setStyleSheet("color: #d03030;")
        self.problem.setWordWrap(True)
        self.back_btn, self.next_btn = QPushButton("← Back"), QPushButton("Next →")
        self.back_btn.setToolTip("Previous step (Alt+B or Alt+Left)")
        self.next_btn.setToolTip("Check this step and go to the next one (Alt+N or Alt+Right)")
        self.back_btn.clicked.connect(self.back)
        self.next_btn.clicked.connect(self.next)
        for key, fn in (("Alt+B", self.back), ("Alt+Left", self.back), ("Alt+N", self.next), ("Alt+Right", self.next)):
            QShortcut(QKeySequence(key), self, activated=lambda fn=fn: not self.on_welcome() and fn())
        nav = QHBoxLayout()
        nav.addWidget(self.problem, 1)
        nav.addWidget(self.back_btn)
        nav.addWidget(self.next_btn)
        right = QVBoxLayout()
        right.addWidget(self.heading)
        right.addWidget(self.intro)
        right.addWidget(self.stack, 1)
        right.addLayout(nav)
        self.wizard = QWidget()
        lay = QHBoxLayout(self.wizard)
        lay.setContentsMargins(MARGIN, MARGIN, MARGIN, MARGIN)
        lay.addWidget(self.sidebar)
        lay.addLayout(right, 1)
        self.welcome = WelcomePage()
        self.welcome.new_image.connect(lambda: self.new_from_dialog(TaskType.image_classification))
        self.welcome.new_text.connect(lambda: self.new_from_dialog(TaskType.text_classification))
        self.welcome.new_lm.connect(lambda: self.new_from_dialog(TaskType.sft))
        self.welcome.new_dpo.connect(lambda: self.new_from_dialog(TaskType.dpo))
        self.welcome.example.connect(self.try_example)
        self.welcome.open_project.connect(self.open_dialog)
        self.welcome.open_run.connect(self.open_run_dialog)
        self.welcome.open_recent.connect(lambda p: self.open_path(Path(p)))
        self.root = QStackedWidget()
        self.root.addWidget(self.welcome)
        self.root.addWidget(self.wizard)
        self.setCentralWidget(self.root)
        self._menus()
        self.state.changed.connect(self._title)
        self.state.run_finished.connect(lambda _: self.pages[EVALUATE].refresh())
        self.training.open_evaluation.connect(lambda: self.go(EVALUATE))
        self.current = 0
        self.resize(1200, 820)
        self.setMinimumSize(900, 640)
        self._restore_layout()
        self.go(0, check=False)
        self.show_welcome()
        self._forget_missing()

    # ---- start page --------------------------------------------------------
    def show_welcome(self) -> None:
        self.welcome.set_recent(self.recent_entries())
        self.root.setCurrentWidget(self.welcome)
        self._title()

    def show_wizard(self) -> None:
        self.root.setCurrentWidget(self.wizard)
        self._title()

    def on_welcome(self) -> bool:
        return self.root.currentWidget() is self.welcome

    def recent_entries(self) -> list[RecentEntry]:
        """Recent projects and runs, each with its last result (read from the run folders)."""
        out = []
        for p in self.recent():
            path = Path(p)
            try:
                if path.is_dir():
                    s = summarize_run(path)
                    out.append(RecentEntry(p, f"{s.project} · run {path.name}", f"{s.short} · {_date(s.finished)}"))
                    continue
                name = load_project(path).name
                s = latest_run(path, name)
                out.append(
                    RecentEntry(p, name, f"last run: {s.short} · {_date(s.finished)}" if s else "no finished run yet")
                )
            except Exception as e:  # a broken entry is shown as such, never hidden silently
                out.append(RecentEntry(p, path.name, f"cannot read: {error_text(e)[:80]}"))
        return out

    def new_from_dialog(self, task: TaskType) -> None:
        if task.is_generative:
            what = "prompt, chosen and rejected answers" if task is TaskType.dpo else "prompt → response pairs"
            path, _ = QFileDialog.getOpenFileName(
                self, f"Choose {what}", "", "Pairs (*.jsonl *.csv *.tsv);;All files (*)"
            )
        elif task.is_text:
            path, _ = QFileDialog.getOpenFileName(
                self,
                "Choose a table of texts (or cancel and pick a folder)",
                "",
                "Tables (*.csv *.tsv *.txt);;All files (*)",
            )
        else:
            path = QFileDialog.getExistingDirectory(self, "Choose a folder with one sub-folder per class")
        if path:
            self.new_from_path(Path(path), task)

    def new_from_path(self, path: Path, task: Optional[TaskType] = None) -> bool:
        """A new, unsaved project for a folder or table; scanning starts at once."""
        if not self._confirm_discard():
            return False
        if not path.exists():
            show_error(self, f"{path}: does not exist")
            return False
        try:
            task = task or guess_task(path)
            project = starter_project(
                path.stem or "project", task, {"source": source_kind(path, task), "path": str(path.resolve())}
            )
        except Exception as e:
            show_error(self, error_text(e))
            return False
        self.state.reset(project)
        self.show_wizard()
        self.go(0, check=False)
        self.pages[0].start_scan()
        return True

    def try_example(self, quick: bool = False) -> bool:
        """The bundled digits as a saved project (what ``tlapp demo`` trains), scanned and ready to go."""
        from tlapp.data.demo import demo_project

        if not self._confirm_discard():
            return False
        try:
            _, pfile = demo_project(projects_dir() / ("digits-example-quick" if quick else "digits-example"), quick)
        except Exception as e:
            show_error(self, f"Cannot write the example: {error_text(e)}")
            return False
        if not self.open(pfile):
            return False
        self.pages[0].start_scan()
        self.statusBar().showMessage(
            "Example loaded: handwritten digits. Press Next to walk through the steps, or "
            "jump to 5. Training and press Start.",
            15000,
        )
        return True

    def open_run_dialog(self) -> None:
        path = QFileDialog.getExistingDirectory(self, "Open a finished run folder")
        if path:
            self.open_run(Path(path))

    def open_run(self, path: Path) -> bool:
        """Show a finished run's Evaluate / Export / Try it, without retraining."""
        if not self._confirm_discard():
            return False
        try:
            summary = summarize_run(path)
            if not RunDir(path).is_finished():
                raise DataError(
                    f"{path}: this run did not finish ({summary.status}); open its project and "
                    "press Resume on the Training step"
                )
            project = load_project(RunDir(path).config)
        except Exception as e:
            show_error(self, error_text(e))
            return False
        self.state.reset(project, run_dir=Path(path))
        self._remember(Path(path))
        self.show_wizard()
        self.go(EVALUATE, check=False)
        return True

    def open_path(self, path: Path) -> bool:
        """Whatever the user dropped or picked: a run folder, a project file, or data for a new project."""
        if path.is_dir() and RunDir(path).config.is_file():
            return self.open_run(path)
        if path.suffix.lower() in (".yaml", ".yml"):
            return self.open(path)
        return self.new_from_path(path)

    def dragEnterEvent(self, e) -> None:  # noqa: N802 - Qt API
        if e.mimeData().hasUrls():
            e.acceptProposedAction()

    def dropEvent(self, e) -> None:  # noqa: N802 - Qt API
        urls = [u.toLocalFile() for u in e.mimeData().urls() if u.isLocalFile()]
        if urls:
            e.acceptProposedAction()
            if self.on_welcome() or not self.pages[0].accept_path(Path(urls[0]), self.current == 0):
                self.open_path(Path(urls[0]))

    # ---- menus -------------------------------------------------------------
    def _menus(self) -> None:
        m = self.menuBar().addMenu("&File")
        for text, key, fn in (
            (
                "New &image project…",
                QKeySequence.StandardKey.New,
                lambda: self.new_from_dialog(TaskType.image_classification),
            ),
            ("New &text project…", None, lambda: self.new_from_dialog(TaskType.text_classification)),
            ("Fine-tune a &language model…", None, lambda: self.new_from_dialog(TaskType.sft)),
            ("Teach &preferences (DPO)…", None, lambda: self.new_from_dialog(TaskType.dpo)),
            ("Try the &example", None, self.try_example),
            ("&Open project…", QKeySequence.StandardKey.Open, self.open_dialog),
            ("Open &run…", QKeySequence("Ctrl+Shift+O"), self.open_run_dialog),
            ("&Save", QKeySequence.StandardKey.Save, self.save),
            ("Save &As…", QKeySequence.StandardKey.SaveAs, self.save_as),
            ("Start &page", None, self.show_welcome),
        ):
            a = QAction(text, self)
            if key is not None:
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
            a.triggered.connect(lambda _=False, p=path: self.open_path(Path(p)))
            self.recent_menu.addAction(a)
        self.recent_menu.setEnabled(bool(self.recent()))

    def recent(self) -> list[str]:
        v = self.settings.value("recent", [])
        items = [v] if isinstance(v, str) else list(v) if isinstance(v, (list, tuple)) else []
        return [str(p) for p in items if isinstance(p, str) and p]

    def _forget_missing(self) -> None:
        """Recent entries whose files are gone are dropped, and the user is told once."""
        raw = self.settings.value("recent", [])
        stored = len(raw) if isinstance(raw, (list, tuple)) else 1 if raw else 0
        kept = [p for p in self.recent() if Path(p).exists()]
        if len(kept) != stored:
            self.settings.setValue("recent", kept)
            self._fill_recent()
            self.welcome.set_recent(self.recent_entries())
            gone = stored - len(kept)
            self.statusBar().showMessage(f"Removed {gone} recent item(s) whose files no longer exist.", 10000)

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
        self.intro.setText(self.pages[index].intro_for())
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
        if self.on_welcome():
            self.setWindowTitle("tlapp")
            return
        name = self.state.path.name if self.state.path else self.state.project.name
        run = f" · run {self.state.run_dir.name}" if self.state.run_dir else ""
        self.setWindowTitle(f"tlapp — {name}{' *' if self.state.dirty else ''}{run}")

    def _confirm_discard(self) -> bool:
        if not self.state.dirty:
            return True
        r = QMessageBox.question(self, "tlapp", "Discard unsaved changes to the project?")
        return r == QMessageBox.StandardButton.Yes

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
        self.show_wizard()
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
            r = QMessageBox.question(
                self,
                "tlapp",
                "Training is running. Stop it and quit?\n(The last checkpoint is kept; you can resume later.)",
            )
            if r != QMessageBox.StandardButton.Yes:
                event.ignore()
                return
            self.training.cancel()
            self.training.trainer.wait(120)
        self._save_layout()
        self.training.stop_background()
        FunctionWorker.stop_all()
        event.accept()

    # ---- remembered layout -------------------------------------------------
    def _splitters(self) -> list[QSplitter]:
        return [s for s in self.findChildren(QSplitter) if s.objectName()]

    def _restore_layout(self) -> None:
        # A corrupt settings file must never stop the window from opening: bad values are skipped.
        try:
            geo = self.settings.value("geometry")
            if geo is not None:
                self.restoreGeometry(geo)
            for sp in self._splitters():
                state = self.settings.value(f"splitters/{sp.objectName()}")
                if state is not None:
                    sp.restoreState(state)
        except (TypeError, ValueError):
            pass

    def _save_layout(self) -> None:
        self.settings.setValue("geometry", self.saveGeometry())
        for sp in self._splitters():
            self.settings.setValue(f"splitters/{sp.objectName()}", sp.saveState())


def _date(t: Optional[float]) -> str:
    return time.strftime("%d %b %Y", time.localtime(t)) if t else "date unknown"
