"""Look and feel in one place: icons from ``assets/``, palette-aware colours
(so charts read in light and dark mode), and the spacing every page uses."""

from __future__ import annotations

from pathlib import Path

from PySide6.QtGui import QColor, QIcon, QPalette, QPixmap
from PySide6.QtWidgets import QApplication

ASSETS = Path(__file__).resolve().parents[1] / "assets"
SPACING = 8  # between controls; pages use multiples of it
MARGIN = 12

# Series colours chosen to stay distinct on white and on a dark grey background.
SERIES = {"train": (64, 132, 230), "val": (240, 140, 50), "batch": (150, 150, 150)}
WARN, BAD, GOOD = "#d08000", "#d03030", "#2e8b57"


ICON_STROKE = "#3b78c4"


def icon(name: str) -> QIcon:
    """``assets/icons/<name>.svg`` (``"app"``: the application icon); an empty icon if missing.

    Step icons get a white variant for the selected state, so they stay visible on the highlight.
    """
    path = ASSETS / "tlapp.svg" if name == "app" else ASSETS / "icons" / f"{name}.svg"
    if not path.is_file():
        return QIcon()
    svg = path.read_text()
    ico = QIcon()
    # Rendered to pixmaps (not QIcon(path)): the SVG icon engine ignores a separate Selected pixmap.
    for colour, mode in ((None, QIcon.Mode.Normal), ("#ffffff", QIcon.Mode.Selected)):
        text = svg.replace(ICON_STROKE, colour) if colour else svg
        pix = QPixmap()
        pix.loadFromData(text.replace("<svg ", '<svg width="64" height="64" ', 1).encode(), "SVG")
        ico.addPixmap(pix, mode)
    return ico


def palette() -> QPalette:
    app = QApplication.instance()
    return app.palette() if app is not None else QPalette()


def text_color() -> QColor:
    return palette().color(QPalette.ColorRole.WindowText)


def muted_color() -> QColor:
    """For secondary text: the text colour halfway to the background."""
    t, w = text_color(), palette().color(QPalette.ColorRole.Window)
    return QColor((t.red() + w.red()) // 2, (t.green() + w.green()) // 2, (t.blue() + w.blue()) // 2)


def dark_palette() -> QPalette:
    """A dark Fusion palette (``tlapp-gui --dark``; the screenshots use it for the dark-mode check)."""
    p = QPalette()
    base, window, text = QColor(35, 37, 41), QColor(48, 50, 55), QColor(225, 225, 225)
    for role, c in (
        (QPalette.ColorRole.Window, window),
        (QPalette.ColorRole.WindowText, text),
        (QPalette.ColorRole.Base, base),
        (QPalette.ColorRole.AlternateBase, window),
        (QPalette.ColorRole.Text, text),
        (QPalette.ColorRole.Button, window),
        (QPalette.ColorRole.ButtonText, text),
        (QPalette.ColorRole.ToolTipBase, base),
        (QPalette.ColorRole.ToolTipText, text),
        (QPalette.ColorRole.Highlight, QColor(64, 132, 230)),
        (QPalette.ColorRole.HighlightedText, QColor(255, 255, 255)),
        (QPalette.ColorRole.PlaceholderText, QColor(140, 140, 140)),
        (QPalette.ColorRole.Link, QColor(120, 170, 255)),
        (QPalette.ColorRole.Mid, QColor(90, 90, 95)),
    ):
        p.setColor(role, c)
    p.setColor(QPalette.ColorGroup.Disabled, QPalette.ColorRole.Text, QColor(120, 120, 120))
    p.setColor(QPalette.ColorGroup.Disabled, QPalette.ColorRole.ButtonText, QColor(120, 120, 120))
    return p
