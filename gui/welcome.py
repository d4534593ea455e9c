"""The start page: what tlapp does, the ways to begin, and recent projects.

It only emits signals; the main window owns the actions (so the File menu,
drag and drop and these buttons all run the same code).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from PySide6.QtCore import QSize, Qt, Signal
from PySide6.QtWidgets import (
    QGridLayout,
    QHBoxLayout,
    QLabel,
    QListWidget,
    QListWidgetItem,
    QPushButton,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from .empty import EmptyState
from .theme import MARGIN, SPACING, icon


@dataclass(frozen=True)
class RecentEntry:
    path: str
    title: str  # project name (or run folder name)
    detail: str  # "accuracy 0.949 · 30 Nov 2026" or "no finished run yet"


ACTIONS = [
    (
        "new_image",
        "image",
        "New image project",
        "Choose a folder with one sub-folder of images per class (cats/, dogs/ …).",
    ),
    (
        "new_text",
        "text",
        "New text project",
        "Choose a CSV/TSV with a text and a label column, or a folder of .txt files per class.",
    ),
    (
        "new_lm",
        "chat",
        "Fine-tune a language model",
        "Choose a .jsonl or CSV of prompt → response pairs: teach a small chat model (SmolLM2) your facts or style.",
    ),
    (
        "new_dpo",
        "prefer",
        "Teach preferences",
        "Choose a .jsonl or CSV of prompt, chosen and rejected answers: teach a chat model which answer you prefer (DPO).",
    ),
    (
        "example",
        "example",
        "Try the example",
        "1,797 handwritten digits, 10 classes: see the whole workflow in about two minutes.",
    ),
]


class _RecentList(QListWidget):
    """One click (or Enter) opens an entry — once, however it was chosen."""

    chosen = Signal(str)

    def __init__(self) -> None:
        super().__init__()
        self.itemClicked.connect(lambda it: self.chosen.emit(it.data(Qt.ItemDataRole.UserRole)))

    def keyPressEvent(self, e) -> None:  # noqa: N802 - Qt API
        if e.key() in (Qt.Key.Key_Return, Qt.Key.Key_Enter) and self.currentItem() is not None:
            self.chosen.emit(self.currentItem().data(Qt.ItemDataRole.UserRole))
            return
        super().keyPressEvent(e)


class WelcomePage(QWidget):
    new_image = Signal()
    new_text = Signal()
    new_lm = Signal()
    new_dpo = Signal()
    example = Signal()
    open_project = Signal()
    open_run = Signal()
    open_recent = Signal(str)

    def __init__(self) -> None:
        super().__init__()
        self.setObjectName("welcome")
        logo = QLabel()
        logo.setPixmap(icon("app").pixmap(QSize(56, 56)))
        title = QLabel("<span style='font-size:20pt; font-weight:600'>Welcome to tlapp</span>")
        blurb = QLabel(
            "Teach a model from your own examples, on this computer. Give tlapp a folder of images, a table "
            "of texts, or questions with the answers you want: it reuses a network pretrained on millions of "
            "examples, trains it on yours, tells you honestly how well it does, and exports a model that works the "
            "first time. Nothing leaves this machine."
        )
        blurb.setWordWrap(True)
        head = QHBoxLayout()
        head.addWidget(logo, 0, Qt.AlignmentFlag.AlignTop)
        text = QVBoxLayout()
        text.addWidget(title)
        text.addWidget(blurb)
        head.addLayout(text, 1)

        self.buttons: dict[str, QToolButton] = {}
        grid = QGridLayout()
        grid.setSpacing(SPACING * 2)
        for col, (key, icon_name, label, help_text) in enumerate(ACTIONS):
            b = QToolButton()
            b.setObjectName(f"welcome_{key}")
            b.setText(label)
            b.setIcon(icon(icon_name))
            b.setIconSize(QSize(40, 40))
            b.setToolButtonStyle(Qt.ToolButtonStyle.ToolButtonTextUnderIcon)
            b.setMinimumSize(190, 96)
            b.setToolTip(help_text)
            b.setStyleSheet("QToolButton { font-size: 12pt; font-weight: 600; padding: 8px; }")
            b.clicked.connect(getattr(self, key).emit)
            self.buttons[key] = b
            hint = QLabel(help_text)
            hint.setWordWrap(True)
            hint.setAlignment(Qt.AlignmentFlag.AlignHCenter | Qt.AlignmentFlag.AlignTop)
            grid.addWidget(b, 0, col, Qt.AlignmentFlag.AlignHCenter)
            grid.addWidget(hint, 1, col)
        opens = QHBoxLayout()
        for key, icon_name, label, tip in (
            ("open_project", "open", "Open project…", "Open a saved tlapp project file (.yaml)"),
            (
                "open_run",
                "run",
                "Open a finished run…",
                "Open a run folder to see its evaluation, export it again or try it — no retraining",
            ),
        ):
            b2 = QPushButton(icon(icon_name), label)
            b2.setObjectName(f"welcome_{key}")
            b2.setToolTip(tip)
            b2.clicked.connect(getattr(self, key).emit)
            opens.addWidget(b2)
        opens.addStretch(1)
        drop = QLabel("Tip: drop a folder or a CSV anywhere on this window to start a project from it.")
        drop.setObjectName("dropHint")

        self.recent = _RecentList()
        self.recent.setObjectName("recentList")
        self.recent.setIconSize(QSize(20, 20))
        self.recent.chosen.connect(self.open_recent.emit)
        self.recent_box = EmptyState(
            self.recent,
            "Projects you open or save appear here, with their last "
            "accuracy and date. Start with one of the buttons above.",
        )

        lay = QVBoxLayout(self)
        lay.setContentsMargins(MARGIN * 3, MARGIN * 2, MARGIN * 3, MARGIN * 2)
        lay.setSpacing(SPACING * 2)
        lay.addLayout(head)
        lay.addLayout(grid)
        lay.addLayout(opens)
        lay.addWidget(drop)
        lay.addWidget(QLabel("<b>Recent</b>"))
        lay.addWidget(self.recent_box, 1)

    def set_recent(self, entries: list[RecentEntry]) -> None:
        self.recent.clear()
        for e in entries:
            it = QListWidgetItem(
                icon("run" if Path(e.path).is_dir() else "open"), f"{e.title}   —   {e.detail}\n{e.path}"
            )
            it.setData(Qt.ItemDataRole.UserRole, e.path)
            it.setToolTip(f"Open {e.path}")
            self.recent.addItem(it)
        (self.recent_box.show_content if entries else self.recent_box.show_empty)()
