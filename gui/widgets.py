"""Small shared widgets and helpers: error dialog, thumbnails, bar chart."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import numpy as np
from PySide6.QtCore import QSize, Qt
from PySide6.QtGui import QColor, QIcon, QImage, QPainter, QPalette, QPixmap
from PySide6.QtWidgets import QListWidget, QListWidgetItem, QMessageBox, QWidget

from tlapp.base.errors import TlappError

from .workers import FunctionWorker


def show_error(parent: Optional[QWidget], message: str, details: str = "") -> None:
    """One clear dialog; the traceback (if any) is behind "Show Details..."."""
    box = QMessageBox(QMessageBox.Icon.Critical, "tlapp", message, QMessageBox.StandardButton.Ok, parent)
    if details:
        box.setDetailedText(details)
    box.setObjectName("errorDialog")
    box.open()


def error_text(exc: BaseException) -> str:
    return str(exc) if isinstance(exc, TlappError) else f"{type(exc).__name__}: {exc}"


def thumbnail_array(path: str, size: int = 72) -> np.ndarray:
    """Decode and shrink one image (any thread): RGB uint8 at most ``size`` pixels a side; grey if unreadable."""
    from PIL import Image

    from tlapp.data.imageio import ImageProblem, load_rgb

    try:
        img = Image.fromarray(load_rgb(path, None))
        img.thumbnail((size, size))
        return np.ascontiguousarray(np.asarray(img.convert("RGB")))
    except (ImageProblem, OSError, ValueError):
        return np.full((size, size, 3), 200, np.uint8)


def pixmap(arr: np.ndarray) -> QPixmap:
    """An RGB uint8 array as a pixmap (GUI thread)."""
    img = QImage(arr.data, arr.shape[1], arr.shape[0], arr.shape[1] * 3, QImage.Format.Format_RGB888).copy()
    return QPixmap.fromImage(img)


def thumbnail(path: str, size: int = 72) -> QPixmap:
    """One thumbnail, decoded here: for a single image the user just chose."""
    return pixmap(thumbnail_array(path, size))


class ThumbGrid(QListWidget):
    """Icon grid of image files with captions."""

    def __init__(self, size: int = 72) -> None:
        super().__init__()
        self.size = size
        self.setViewMode(QListWidget.ViewMode.IconMode)
        self.setIconSize(QSize(size, size))
        self.setResizeMode(QListWidget.ResizeMode.Adjust)
        self.setMovement(QListWidget.Movement.Static)
        self.setSpacing(4)

    def set_texts(self, items: list[str]) -> None:
        """Text examples: one row each, no thumbnails."""
        self.clear()
        self.setViewMode(QListWidget.ViewMode.ListMode)
        self.setWordWrap(True)
        for caption in items:
            self.addItem(QListWidgetItem(caption))

    def set_items(self, items: list[tuple[str, str]]) -> None:
        """items: (path, caption). Captions show at once; the images are decoded in a background
        thread and appear when ready (hundreds of decodes would otherwise freeze the window)."""
        self.clear()
        self.setViewMode(QListWidget.ViewMode.IconMode)
        blank = QPixmap(self.size, self.size)
        blank.fill(Qt.GlobalColor.transparent)
        for path, caption in items:
            it = QListWidgetItem(QIcon(blank), caption)
            it.setToolTip(path)
            it.setData(Qt.ItemDataRole.UserRole, path)
            self.addItem(it)
        self._generation = getattr(self, "_generation", 0) + 1
        gen, paths = self._generation, [p for p, _ in items]
        self._loader = FunctionWorker(lambda: [thumbnail_array(p, self.size) for p in paths])
        self._loader.done.connect(lambda arrays: self._show_thumbs(gen, arrays))
        self._loader.start()

    def _show_thumbs(self, generation: int, arrays: list[np.ndarray]) -> None:
        if generation != self._generation:
            return  # a newer set of items replaced these meanwhile
        for i, arr in enumerate(arrays[: self.count()]):
            self.item(i).setIcon(QIcon(pixmap(arr)))

    def loading(self) -> bool:
        loader = getattr(self, "_loader", None)
        return loader is not None and loader.isRunning()


class BarChart(QWidget):
    """Per-class counts (or a histogram) as bars with names under them, drawn with QPainter.

    A handful of rectangles: painting takes about a millisecond, where a pyqtgraph plot's first
    paint took 50 ms of Python and stalled the window right when a scan finished.
    """

    def __init__(self) -> None:
        super().__init__()
        self.setMinimumHeight(140)
        self.counts: dict[str, int] = {}
        self.title = ""

    def set_counts(self, counts: dict[str, int]) -> None:
        self.counts = dict(counts)
        self.update()

    def setTitle(self, title: str) -> None:  # noqa: N802 - same name as the plot widgets'
        self.title = title
        self.update()

    def paintEvent(self, _event) -> None:  # noqa: N802 - Qt API
        if not self.counts:
            return
        p = QPainter(self)
        p.setRenderHint(QPainter.RenderHint.Antialiasing)
        pal = self.palette()
        text, grid = pal.color(QPalette.ColorRole.WindowText), pal.color(QPalette.ColorRole.Mid)
        fm = p.fontMetrics()
        top = fm.height() + 6 if self.title else 6
        left, bottom = fm.horizontalAdvance(f"{max(self.counts.values()):,}") + 10, fm.height() + 8
        w, h = self.width() - left - 8, self.height() - top - bottom
        if w <= 10 or h <= 10:
            p.end()
            return
        if self.title:
            p.setPen(text)
            p.drawText(0, 0, self.width(), fm.height() + 4, Qt.AlignmentFlag.AlignCenter, self.title)
        peak = max(max(self.counts.values()), 1)
        p.setPen(grid)
        for frac in (0.0, 0.5, 1.0):  # three gridlines with their values
            y = top + h - int(frac * h)
            p.drawLine(left, y, left + w, y)
            p.setPen(text)
            p.drawText(
                0, y - fm.height() // 2, left - 4, fm.height(), Qt.AlignmentFlag.AlignRight, f"{round(frac * peak):,}"
            )
            p.setPen(grid)
        n = len(self.counts)
        slot = w / n
        step = max(1, int(n / max(w / 60, 1)))  # labels at least ~60 px apart, so they never overlap
        p.setPen(Qt.PenStyle.NoPen)
        p.setBrush(QColor(70, 130, 200))
        for i, v in enumerate(self.counts.values()):
            bh = int(h * v / peak)
            p.drawRect(int(left + i * slot + slot * 0.15), top + h - bh, max(int(slot * 0.7), 1), bh)
        p.setPen(text)
        for i, name in enumerate(self.counts):
            if i % step == 0:
                p.drawText(
                    int(left + i * slot),
                    top + h + 2,
                    int(slot * step),
                    fm.height() + 4,
                    Qt.AlignmentFlag.AlignHCenter,
                    fm.elidedText(name, Qt.TextElideMode.ElideRight, int(slot * step)),
                )
        p.end()


def open_folder(path: Path) -> None:
    from PySide6.QtCore import QUrl
    from PySide6.QtGui import QDesktopServices

    QDesktopServices.openUrl(QUrl.fromLocalFile(str(path)))
