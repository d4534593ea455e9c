"""Empty states: a chart, table or list that has nothing to show yet shows one
sentence instead — what will appear there, and how to get it."""

from __future__ import annotations

from PySide6.QtCore import Qt
from PySide6.QtGui import QPalette
from PySide6.QtWidgets import QLabel, QStackedWidget, QWidget


class EmptyState(QStackedWidget):
    """Holds ``content`` and a message; starts showing the message."""

    def __init__(self, content: QWidget, message: str) -> None:
        super().__init__()
        self.content, self.default = content, message
        self.message = QLabel(message)
        self.message.setObjectName("emptyState")
        self.message.setWordWrap(True)
        self.message.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.message.setMargin(16)
        self.message.setForegroundRole(QPalette.ColorRole.PlaceholderText)
        self.message.setStyleSheet(
            "QLabel#emptyState { font-size: 11pt; border: 1px dashed palette(mid); border-radius: 8px; }"
        )
        self.addWidget(self.message)
        self.addWidget(content)

    def show_empty(self, message: str | None = None) -> None:
        """Show ``message`` (default: the one given at creation)."""
        self.message.setText(message or self.default)
        self.setCurrentIndex(0)

    def show_content(self) -> None:
        self.setCurrentIndex(1)

    def is_empty(self) -> bool:
        return self.currentIndex() == 0
