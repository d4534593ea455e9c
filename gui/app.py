"""``tlapp-gui [--dark] [PROJECT | RUN_DIR | DATA]``: start the wizard."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Optional


def main(argv: Optional[list[str]] = None) -> int:
    from PySide6.QtCore import Qt
    from PySide6.QtGui import QGuiApplication
    from PySide6.QtWidgets import QApplication

    from .main_window import MainWindow
    from .theme import dark_palette, icon

    args = list(sys.argv[1:] if argv is None else argv)
    dark = "--dark" in args
    args = [a for a in args if a != "--dark"]
    # Fractional scale factors (150%) as the system asks, instead of rounding to 1x or 2x.
    QGuiApplication.setHighDpiScaleFactorRoundingPolicy(Qt.HighDpiScaleFactorRoundingPolicy.PassThrough)
    app = QApplication.instance() or QApplication(sys.argv[:1])
    app.setApplicationName("tlapp")
    app.setOrganizationName("tlapp")
    app.setStyle("Fusion")  # consistent look; follows the system's light/dark palette
    if dark:
        app.setPalette(dark_palette())
    app.setWindowIcon(icon("app"))
    win = MainWindow()
    if args:
        win.open_path(Path(args[0]))  # a project file, a run folder, or data for a new project
    win.show()
    return app.exec()


if __name__ == "__main__":
    sys.exit(main())
