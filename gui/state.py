"""The wizard's shared state: the project being edited, its file, the last run.

Pages read from and write to one :class:`ProjectState`; a change signal lets
the window mark the title dirty and pages refresh derived views.
"""

from __future__ import annotations

import shlex
from pathlib import Path
from typing import Any, Optional

from PySide6.QtCore import QObject, Signal

from tlapp.config import Project, load_project, project_from_dict, save_project


def default_project() -> Project:
    return project_from_dict({"name": "untitled", "data": {"path": "."}})


class ProjectState(QObject):
    changed = Signal()
    scanned = Signal(object)  # ScanReport
    run_finished = Signal(str)  # run dir

    def __init__(self) -> None:
        super().__init__()
        self.project: Project = default_project()
        self.path: Optional[Path] = None
        self.dirty = False
        self.scan_report: Any = None
        self.run_dir: Optional[Path] = None
        self.blank = True  # a new window's placeholder project: no data chosen yet

    def reset(self, project: Project, path: Optional[Path] = None, run_dir: Optional[Path] = None) -> None:
        """Start over with ``project`` (a new project from data, or a finished run's config)."""
        self.project, self.path, self.run_dir = project, path, run_dir
        self.scan_report, self.dirty, self.blank = None, path is None and run_dir is None, False
        self.changed.emit()

    def update(self, section: str, **values: Any) -> None:
        """Replace fields of one section, validating through the schema."""
        d = self.project.model_dump(mode="json")
        d[section] = {**d[section], **values} if isinstance(d[section], dict) else values
        self.set_dict(d)

    def set_project(self, project: Project) -> None:
        """Replace the project with one a core rule made (e.g. :func:`tlapp.presets.with_preset`)."""
        self.project = project
        self.dirty = True
        self.changed.emit()

    def n_train(self) -> int:
        """Training examples of the scanned data (0 before a scan): what the preset sizes its proposal by."""
        from tlapp.training.plan import split_sizes

        return split_sizes(self.project, self.scan_report)[0] if self.scan_report is not None else 0

    def set_dict(self, d: dict[str, Any]) -> None:
        self.project = project_from_dict(d, "project")
        self.dirty = True
        self.changed.emit()

    def load(self, path: Path) -> None:
        self.project = load_project(path)
        self.path, self.dirty, self.scan_report, self.run_dir, self.blank = Path(path), False, None, None, False
        self.changed.emit()

    def save(self, path: Optional[Path] = None) -> Path:
        target = Path(path or self.path or "project.yaml")
        save_project(self.project, target)
        self.path, self.dirty = target, False
        self.changed.emit()
        return target

    def cli_command(self) -> str:
        """The exact ``tlapp train`` line for the current (saved) project."""
        name = str(self.path) if self.path else "project.yaml"
        return f"tlapp train {shlex.quote(name)}"
