"""Small shared widgets and helpers: error dialog, thumbnails, bar chart."""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import QSize, Qt
from PySide6.QtGui import QIcon, QImage, QPixmap
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


class BarChart(pg.PlotWidget):
    """Per-class counts as bars, class names on the x axis."""

    def __init__(self) -> None:
        super().__init__()
        self.setBackground(None)
        self.setMinimumHeight(140)
        self.showGrid(y=True, alpha=0.3)
        self.setMouseEnabled(False, False)

    def set_counts(self, counts: dict[str, int]) -> None:
        self.clear()
        names = list(counts)
        if not names:
            return
        self.addItem(pg.BarGraphItem(x=list(range(len(names))), height=list(counts.values()), width=0.7,
                                     brush=pg.mkBrush(70, 130, 200)))
        step = max(1, len(names) // 8)  # at most ~8 labels, so they never overlap
        self.getAxis("bottom").setTicks([[(i, n) for i, n in enumerate(names) if i % step == 0]])


def open_folder(path: Path) -> None:
    from PySide6.QtCore import QUrl
    from PySide6.QtGui import QDesktopServices

    QDesktopServices.openUrl(QUrl.fromLocalFile(str(path)))
