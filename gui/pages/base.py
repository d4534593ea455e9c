"""The contract every wizard page follows."""

from __future__ import annotations

from typing import Optional

from PySide6.QtWidgets import QWidget

from ..state import ProjectState


class WizardPage(QWidget):
    title = "Step"
    intro = ""  # one paragraph under the heading: what this step does and what to do here
    intro_lm = ""  # the same for a language-model project (tasks sft and dpo), where it differs
    intro_dpo = ""  # the same for preference tuning (task dpo), where it differs again

    def intro_for(self) -> str:
        task = self.state.project.task.type
        if self.intro_dpo and task.value == "dpo":
            return self.intro_dpo
        return self.intro_lm if self.intro_lm and task.is_generative else self.intro

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
