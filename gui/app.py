"""``tlapp-gui [PROJECT]``: start the wizard."""
from __future__ import annotations

import sys
from pathlib import Path
from typing import Optional


def main(argv: Optional[list[str]] = None) -> int:
    from PySide6.QtWidgets import QApplication

    from .main_window import MainWindow

    args = sys.argv[1:] if argv is None else argv
    app = QApplication.instance() or QApplication(sys.argv[:1])
    app.setApplicationName("tlapp")
    app.setOrganizationName("tlapp")
    app.setStyle("Fusion")  # consistent look; follows the system's light/dark palette
    win = MainWindow()
    if args:
        win.open(Path(args[0]))
    win.show()
    return app.exec()


if __name__ == "__main__":
    sys.exit(main())
