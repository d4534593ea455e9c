"""The contract every wizard page follows."""

from __future__ import annotations

from typing import Optional

from PySide6.QtWidgets import QWidget

from ..state import ProjectState


class WizardPage(QWidget):
    title = "Step"
    intro = ""  # one paragraph under the heading: what this step does and what to do here
    intro_lm = ""  # the same for a language-model project (task sft), where it differs

    def intro_for(self) -> str:
        return self.intro_lm if self.intro_lm and self.state.project.task.type.is_generative else self.intro

    def __init__(self, state: ProjectState) -> None:
        super().__init__()
        self.state = state

    def refresh(self) -> None:
        """Load widgets from ``state.project`` (called when the page is shown)."""

    def commit(self) -> None:
        """Write widgets into ``state.project`` (called before leaving the page)."""

    def validate(self) -> Optional[str]:
        """None when the user may go on; otherwise a one-line reason."""
        return None
