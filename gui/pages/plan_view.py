"""The plan before Start (Training step): each phase, what it trains, its expected time, and the
preset's fine-tune decision with a one-click "Fine-tune anyway". The rules are the core's
(:func:`tlapp.training.plan.plan_for`, :func:`tlapp.presets.with_finetune_choice`); this only shows them."""

from __future__ import annotations

import html
from typing import Any, Optional

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import QGroupBox, QHBoxLayout, QLabel, QPushButton, QVBoxLayout

from tlapp.base.errors import TlappError
from tlapp.presets import with_finetune_choice
from tlapp.training.plan import plan_for, plan_lines


class PlanView(QGroupBox):
    changed = Signal()  # the person changed the plan here ("Fine-tune anyway"): the page shows it again

    def __init__(self, state) -> None:
        super().__init__("Plan — what will train")
        self.state = state
        self.text = QLabel()
        self.text.setObjectName("planText")
        self.text.setWordWrap(True)
        self.text.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.anyway = QPushButton("Fine-tune anyway")
        self.anyway.setObjectName("finetuneAnyway")
        self.anyway.setToolTip(
            "Run the fine-tune whatever the preset's evidence says (train.finetune: always); it is "
            "kept, at its best epoch on validation"
        )
        self.anyway.clicked.connect(self._toggle)
        self.decision = None
        self.run_plan: Optional[dict[str, Any]] = None  # the opened run's own plan event (shown until a scan)
        row = QHBoxLayout()
        row.addStretch(1)
        row.addWidget(self.anyway)
        lay = QVBoxLayout(self)
        lay.addWidget(self.text)
        lay.addLayout(row)

    def refresh(self) -> None:
        p = self.state.project
        if self.state.scan_report is None and self.run_plan is not None:
            self.show_lines(self.run_plan["lines"])
            self.anyway.setVisible(False)
            return
        if self.state.scan_report is None:
            self.text.setText(
                "Scan the data (step 1) to see the plan: each phase, what it trains, how long it "
                "takes here and whether the preset will fine-tune."
            )
            self.anyway.setVisible(False)
            return
        try:
            plan = plan_for(p, self.state.scan_report)
        except TlappError as e:
            self.text.setText(f"<b>This plan cannot run:</b> {html.escape(str(e))}")
            self.anyway.setVisible(False)
            return
        self.show_lines(plan_lines(plan))
        self.decision = plan.decision.finetune
        forced = p.train.finetune == "always"
        self.anyway.setText("Let the preset decide" if forced else "Fine-tune anyway")
        self.anyway.setVisible(
            not p.task.type.is_generative
            and p.train.preset != "custom"
            and (forced or plan.decision.finetune is not True)
        )

    def show_lines(self, lines: list[str]) -> None:
        """The decision and the expected time (the phases themselves are the table below)."""
        decision, total = lines[-2].strip(), lines[-1].strip()
        verdict, _, why = decision.partition(" — ")
        self.text.setText(
            f"<b>{html.escape(verdict.capitalize())}</b> — {html.escape(why)}<br>"
            f"{html.escape(total.capitalize())}. <small>{html.escape(lines[0])}</small>"
        )
        self.text.setToolTip("\n".join(lines))

    def on_plan_event(self, d: dict[str, Any]) -> None:
        """The run's own plan (with the speed it measured), once it has read the data."""
        self.show_lines(d["lines"])

    def _toggle(self) -> None:
        p = self.state.project
        choice = "auto" if p.train.finetune == "always" else "always"
        self.state.set_project(with_finetune_choice(p, choice, self.state.n_train()))
        self.changed.emit()
