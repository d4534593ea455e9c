"""Step 5 — Training: recipe (or phases editor), device, Start / Cancel /
Resume, a progress bar for the embedding pass, live charts, a log, and the
result card when the run ends. Training runs in a child process (see workers)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Optional

from PySide6.QtCore import Qt, Signal
from PySide6.QtGui import QGuiApplication
from PySide6.QtWidgets import (
    QButtonGroup,
    QCheckBox,
    QComboBox,
    QFormLayout,
    QFrame,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QPlainTextEdit,
    QProgressBar,
    QPushButton,
    QRadioButton,
    QScrollArea,
    QSpinBox,
    QSplitter,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from tlapp.base.errors import TlappError
from tlapp.base.paths import projects_dir
from tlapp.base.progress import describe_seconds, progress_text
from tlapp.config import EarlyStopping, Phase
from tlapp.deploy.summary import RunSummary, summarize_run
from tlapp.events import (
    BATCH_END,
    CRASH,
    EPOCH_END,
    PHASE_START,
    PLAN,
    PROGRESS,
    RESUME,
    RUN_END,
    SOLVER_STEP,
    describe,
)
from tlapp.model.tasks import metric_name
from tlapp.presets import PRESETS, phases_of, sft_epochs, with_preset, with_proposed_phases
from tlapp.rundir import RunDir, absolute_data_path
from tlapp.training.devices import describe_device
from tlapp.training.estimate import examples_used
from tlapp.training.plan import preset_plans

from ..charts import TrainingCharts
from ..empty import EmptyState
from ..theme import GOOD
from ..widgets import open_folder, show_error
from ..workers import DeviceProbe, TrainingProcess
from .base import WizardPage
from .plan_view import PlanView

# train.strategy values and how the wizard names them.
STRATEGIES = (
    ("auto", "Automatic"),
    ("default", "One device"),
    ("mirrored", "Mirrored on this machine"),
    ("multi_worker", "Several machines (TF_CONFIG)"),
)
PHASE_COLUMNS = ["Name", "Epochs", "LR", "Schedule", "Optimizer", "Freeze", "Patience", "Flip aug."]
PRESET_LABELS = {
    name: f"{name.capitalize()} — {p['about']}" + (" (recommended)" if name == "balanced" else "")
    for name, p in PRESETS.items()
}
PRESET_HELP = {
    "fast": "One pass of the backbone over your data, then a linear head solved exactly, its strength chosen "
    "by cross-validation and refit on all your data. Usually within a point of Balanced.",
    "balanced": "Fast, plus mirrored copies when cross-validation says they help, and the fine-tune phase (what "
    "you ticked on the Layers step) when your data can show its gain and it fits the time budget. "
    "The default.",
    "best": "Balanced with a longer fine-tune and a larger time budget (train.time_budget_s).",
}


CHARTS_BEFORE = (
    "Press Start: loss and accuracy curves appear here as the model trains. With the presets, the "
    "backbone first reads your examples once (the progress bar above); then each cross-validation "
    "candidate of the head adds a validation point, the solver draws its curve, and a fine-tune adds "
    "its batches and epochs."
)


STAGE_HELP = {
    "scanning": "Reading every file once, so no broken image can stop training half-way.",
    "embedding": "The backbone's one pass over your data (each example once, then cached); the head is then "
    "fitted in seconds.",
    "cross-validating": "Choosing the head's regularisation: each candidate is scored on examples it never saw "
    "(a validation point on the charts).",
    "solving the head": "Fitting the head to convergence (L-BFGS): the per-step line on the charts.",
    "evaluating": "Scoring the validation examples with the final model.",
    "exporting": "Writing the model in each format, then loading it in a fresh process to check its answers.",
    "loading the language model": "Reading the model's weights from tlapp's model store (a few seconds).",
    "answering": "Asking the held-out prompts, to show the answers before and after tuning side by side.",
    "preparing the first": "TensorFlow builds the training graph once; every later step reuses it (about 25 s "
    "for SmolLM2 on a 2-core CPU).",
    "scoring": "The starting model scores every chosen and rejected answer once: that is the reference DPO "
    "measures the tuned model against (no second copy of the model in memory).",
}
CHARTS_BEFORE_LM = (
    "Press Start: the loss and perplexity of the answers appear here as the model trains (lower is "
    "better; perplexity 1 means it predicts every answer token). Before the first point: the model "
    "loads, answers a few held-out prompts, and prepares its training graph (about a minute)."
)

CHARTS_BEFORE_DPO = (
    "Press Start: four curves appear here as the model learns your preferences — the DPO loss (log 2 = 0.69 "
    "at the start, lower is better), reward accuracy (how often the preferred answer gains more than the other), "
    "the reward margin between them, and the two rewards themselves (chosen should rise above rejected). Before "
    "the first point the model loads, scores every answer once as its reference and answers a few held-out prompts."
)


class SummaryCard(QFrame):
    """The result at a glance: the headline figure, the best phase, time, the export and what to do next."""

    def __init__(self) -> None:
        super().__init__()
        self.setObjectName("summaryCard")
        self.setStyleSheet("QFrame#summaryCard { border: 2px solid %s; border-radius: 8px; }" % GOOD)
        self.text = QLabel()
        self.text.setWordWrap(True)
        self.text.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.open_btn = QPushButton("Open folder")
        self.open_btn.setToolTip("Show the exported model in your file manager")
        self.copy_btn = QPushButton("Copy predict command")
        self.copy_btn.setToolTip("Copy the `tlapp predict` line that runs this model on new files")
        self.eval_btn = QPushButton("See the evaluation →")
        self.summary: Optional[RunSummary] = None
        self.open_btn.clicked.connect(
            lambda: self.summary and self.summary.export_dir and open_folder(self.summary.export_dir)
        )
        self.copy_btn.clicked.connect(self.copy_command)
        buttons = QHBoxLayout()
        for b in (self.open_btn, self.copy_btn):
            buttons.addWidget(b)
        buttons.addStretch(1)
        buttons.addWidget(self.eval_btn)
        lay = QVBoxLayout(self)
        lay.addWidget(self.text)
        lay.addLayout(buttons)

    def show_summary(self, s: RunSummary) -> None:
        self.summary = s
        took = f" in {describe_seconds(s.seconds)}" if s.seconds else ""
        head = f"{s.metric.capitalize()} {s.value:.3f}" if s.value is not None and s.metric else "No evaluation"
        best = f" Best weights: phase '{s.best_phase}'." if s.best_phase else ""
        check = "checked in a fresh process ✓" if s.verified else "not verified"
        export = f"Exported to <code>{s.export_dir}</code> ({check})." if s.export_dir else "No export."
        self.text.setText(
            f"<span style='font-size:13pt'><b>✓ Done{took} — {head}</b></span> {s.how}.<br>{export}{best}"
        )
        self.setToolTip(f"Recipe: {s.recipe}" if s.recipe else "")
        self.open_btn.setEnabled(s.export_dir is not None)
        self.copy_btn.setText("Copy generate command" if s.task in ("sft", "dpo") else "Copy predict command")
        self.setVisible(True)
        self.setMinimumHeight(self.sizeHint().height())  # the splitter may not squash the result

    def copy_command(self) -> str:
        cmd = self.summary.predict_command() if self.summary else ""
        QGuiApplication.clipboard().setText(cmd)
        return cmd


class TrainingPage(WizardPage):
    title = "Training"
    intro = (
        "Pick a recipe and press Start. Training runs in the background — you can keep using the window — "
        "and the best model is kept, exported and checked automatically. Cancel keeps the last checkpoint; "
        "Resume continues from it."
    )
    run_done = Signal(str, str)  # run dir, status
    open_evaluation = Signal()

    def __init__(self, state, trainer_factory: Callable[[], Any] = TrainingProcess) -> None:
        super().__init__(state)
        self.trainer_factory = trainer_factory
        self.trainer: Optional[Any] = None
        self.status_text = "idle"
        self.presets = {name: QRadioButton(label) for name, label in PRESET_LABELS.items()}
        self.preset_group = QButtonGroup(self)
        preset_box = QGroupBox("Recipe")
        pl = QVBoxLayout(preset_box)
        for name, rb in self.presets.items():
            self.preset_group.addButton(rb)
            rb.setToolTip(PRESET_HELP[name])
            rb.toggled.connect(self._preset_changed)
            pl.addWidget(rb)
        self.preset_note = QLabel()
        self.preset_note.setWordWrap(True)
        pl.addWidget(self.preset_note)
        self.advanced = QCheckBox("Advanced: write the phases myself")
        self.advanced.setToolTip(
            "Run exactly the phases in the table (preset 'custom'): epochs, learning rates, "
            "freeze plans. Off: the recipe chooses them from your data."
        )
        self.advanced.toggled.connect(self._advanced_changed)
        pl.addWidget(self.advanced)
        self.phases = QTableWidget(0, len(PHASE_COLUMNS))
        self.phases.setHorizontalHeaderLabels(PHASE_COLUMNS)
        self.phases.horizontalHeader().setStretchLastSection(True)
        self.phases.setToolTip(
            "One row per phase, run in order. LR: learning rate; Freeze: which backbone layers "
            "stay fixed (edit on the Layers step); Patience: epochs without improvement before "
            "the phase stops early."
        )
        add, remove = QPushButton("Add phase"), QPushButton("Remove phase")
        self.phase_buttons = (add, remove)
        add.clicked.connect(self.add_phase)
        remove.clicked.connect(self.remove_phase)
        self.batch = QSpinBox()
        self.batch.setRange(1, 4096)
        self.batch.setMaximumWidth(120)
        self.batch.setToolTip(
            "Examples per training step. Default 32. Lower it if you run out of memory; higher is faster on a GPU."
        )
        self.mixed = QCheckBox("Mixed precision")
        self.mixed.setToolTip(
            "16-bit maths on a GPU with tensor cores: about twice as fast and half the memory "
            "(default: on where it pays). Has no effect on a CPU, so it is hidden there."
        )
        self.mixed.setVisible(False)
        self.device = QLabel("detecting…")
        self.device.setWordWrap(True)
        self.device.setToolTip("Where training runs: the first visible GPU when there is one, else the CPU")
        self.strategy = QComboBox()
        for key, text in STRATEGIES:
            self.strategy.addItem(text, key)
        self.strategy.setToolTip(
            "How many copies of the model train side by side (tf.distribute). Default auto: "
            "one per GPU when there are several, else one device. The batch size is the "
            "total over all copies, so results match a one-device run."
        )
        self.strategy_note = QLabel("detecting…")
        self.strategy_note.setWordWrap(True)
        self.strategy.currentIndexChanged.connect(self._strategy_note)
        self._survey: dict = {}
        self.start_btn, self.cancel_btn, self.resume_btn = (
            QPushButton("Start"),
            QPushButton("Cancel"),
            QPushButton("Resume"),
        )
        self.start_btn.setToolTip("Train a new run with these settings (in the background)")
        self.cancel_btn.setToolTip("Stop after the current batch; the last checkpoint is kept")
        self.resume_btn.setToolTip("Continue a cancelled or failed run from its last checkpoint")
        self.start_btn.setObjectName("startButton")
        self.start_btn.clicked.connect(self.start)
        self.cancel_btn.clicked.connect(self.cancel)
        self.resume_btn.clicked.connect(lambda: self.start(resume=True))
        self.cancel_btn.setEnabled(False)
        self.resume_btn.setEnabled(False)
        self.counters = QLabel("Not started: choose a recipe, then press Start.")
        self.counters.setWordWrap(True)
        self.step_progress = QProgressBar()
        self.step_progress.setObjectName("stepProgress")
        self.step_progress.setVisible(False)
        self.card = SummaryCard()
        self.card.setVisible(False)
        self.card.eval_btn.clicked.connect(self.open_evaluation.emit)
        self.charts = TrainingCharts()
        self.charts_box = EmptyState(self.charts, CHARTS_BEFORE)
        self.log = QPlainTextEdit()
        self.log.setReadOnly(True)
        self.log.setMaximumBlockCount(5000)
        self.log.setPlaceholderText(
            "The run's log appears here: what the recipe decided, each phase and epoch, the export and its check."
        )
        form = self.form = QFormLayout()
        form.addRow("Batch size", self.batch)
        form.addRow("Device", self.device)
        form.addRow("Replicas", self.strategy)
        form.addRow("", self.strategy_note)
        form.addRow("", self.mixed)
        buttons = QHBoxLayout()
        for b in (add, remove):
            buttons.addWidget(b)
        buttons.addStretch(1)
        for b in (self.start_btn, self.cancel_btn, self.resume_btn):
            buttons.addWidget(b)
        top = QWidget()
        tl = QVBoxLayout(top)
        tl.setContentsMargins(0, 0, 0, 0)
        tl.addWidget(preset_box)
        self.plan_view = PlanView(state)
        self.plan_view.changed.connect(self.refresh)
        tl.addWidget(self.plan_view)
        tl.addWidget(self.phases)
        tl.addLayout(buttons)
        tl.addLayout(form)
        tl.addWidget(self.card)
        tl.addWidget(self.counters)
        tl.addWidget(self.step_progress)
        # The settings scroll when the window is short, instead of being squashed onto each other.
        top_scroll = QScrollArea()
        top_scroll.setObjectName("trainingTop")
        top_scroll.setWidgetResizable(True)
        top_scroll.setFrameShape(QFrame.Shape.NoFrame)
        top_scroll.setWidget(top)
        top_scroll.setMinimumHeight(240)
        split = QSplitter(Qt.Orientation.Vertical)
        split.setObjectName("trainingSplit")
        split.addWidget(top_scroll)
        split.addWidget(self.charts_box)
        split.addWidget(self.log)
        split.setStretchFactor(0, 2)
        split.setStretchFactor(1, 3)
        split.setCollapsible(0, False)
        split.setCollapsible(1, False)
        self.charts_box.setMinimumHeight(220)  # the result card grows the top: the curves must stay readable
        self.log.setMinimumHeight(60)
        lay = QVBoxLayout(self)
        lay.addWidget(split)
        self._device_probe = DeviceProbe()
        self._device_probe.done.connect(self._surveyed)
        self._device_probe.failed.connect(lambda m: self.device.setText(f"unknown ({m})"))
        # Started when this step is first shown: at start-up it would compete with the scan for the CPU.

    def stop_background(self) -> None:
        """The window is closing: stop the device probe."""
        self._device_probe.stop()

    def _surveyed(self, found: dict) -> None:
        """The probe's answer: the device line, and what each replica setting would do here."""
        self._survey = found
        self._device_known(describe_device(found))
        self._strategy_note()

    def _device_known(self, text: str) -> None:
        self.device.setText(text)
        self.mixed.setVisible(text.startswith("GPU"))

    def _strategy_note(self) -> None:
        key = self.strategy.currentData()
        if key == "default":
            self.strategy_note.setText("One device (the one above), no copies.")
        elif self._survey:
            self.strategy_note.setText(str(self._survey.get(f"strategy_{key}", "")).replace(" — ", ": ", 1))

    # ---- phases table ------------------------------------------------------
    def refresh(self) -> None:
        self._device_probe.start()
        p = self.state.project
        custom = p.train.preset == "custom"
        rd = self.state.run_dir
        if not self.is_running() and rd is not None and RunDir(rd).is_finished() and not self.card.isVisible():
            try:
                self.card.show_summary(summarize_run(rd))  # an opened finished run shows its result here too
                self.replay(rd)
                self.counters.setText(
                    f"Finished run {rd.name}, opened from disk. Press Start to train a new run with the settings above."
                )
            except Exception:
                pass  # the Evaluate step reports a broken run folder
        elif rd is None:
            self.card.setVisible(False)
            self.plan_view.run_plan = None
        self.advanced.blockSignals(True)
        self.advanced.setChecked(custom)
        self.advanced.blockSignals(False)
        for name, rb in self.presets.items():
            rb.blockSignals(True)
            rb.setChecked(name == p.train.preset)
            rb.setEnabled(not custom)
            rb.blockSignals(False)
        self._show_phases(True)  # the phases are the plan under every preset; Advanced only drops its decisions
        self._estimates()
        self.plan_view.refresh()
        self.batch.setValue(p.train.batch_size)
        self.strategy.setCurrentIndex(max(0, self.strategy.findData(p.train.strategy)))
        for w in (self.strategy, self.strategy_note):  # a language model trains on one device (for now)
            self.form.setRowVisible(w, not p.task.type.is_generative)
        self.mixed.setChecked(p.train.mixed_precision is not False)  # auto: on where the GPU has tensor cores
        self.phases.setRowCount(0)
        try:
            shown = phases_of(p, self.state.n_train())
        except TlappError:
            shown = p.train.phases  # the plan view says what is wrong with them
        for ph in shown:
            self._append_row(ph.model_dump(mode="json"))
        self._fit_phases()
        self._chart_kind()
        if self.charts_box.is_empty() and not self.is_running() and self.state.run_dir is None:
            self.charts_box.show_empty()

    def _lm_estimates(self, rep) -> None:
        """A language model: what each preset trains, and the steps it takes (speed measured on 2 CPUs)."""
        p = self.state.project
        dpo = p.task.type.value == "dpo"
        noun = "triples" if dpo else "pairs"
        scanned = rep is not None and hasattr(rep, "pairs")
        n_train = max(1, round(len(rep.pairs) * (1 - p.data.val_fraction - p.data.test_fraction))) if scanned else 100
        for name, rb in self.presets.items():
            rb.setText(
                f"{name.capitalize()} — LoRA rank 8 on queries and values, "
                f"{sft_epochs(name, n_train, p.train.batch_size)} epochs"
                + (f" for your {noun}" if scanned else "")
                + (" (recommended)" if name == "balanced" else "")
            )
        if not scanned:
            self.preset_note.setText(f"Scan your {noun} (step 1) to see how many steps training takes.")
            return
        steps = -(-n_train // p.train.batch_size)
        epochs = sum(ph.epochs for ph in phases_of(p, n_train))
        self.preset_note.setText(
            f"{n_train} training {noun} at batch {p.train.batch_size}: {steps} step(s) per epoch, {steps * epochs} in "
            + (
                "all; on a 2-core CPU a SmolLM2 DPO step (chosen and rejected: twice the sequences) takes 2–6 s, "
                "plus ~1 min to score the reference and start."
                if dpo
                else "all; on a 2-core CPU SmolLM2 takes 1–3 s a step, plus ~25 s to start."
            )
        )

    def _show_phases(self, on: bool) -> None:
        self.phases.setVisible(on)
        for b in self.phase_buttons:
            b.setVisible(on)

    def _preset_changed(self) -> None:
        name = next((n for n, rb in self.presets.items() if rb.isChecked()), "balanced")
        if not self.advanced.isChecked() and name != self.state.project.train.preset:
            self.state.set_project(with_preset(self.state.project, name, self.state.n_train()))
            self.refresh()

    def _advanced_changed(self, on: bool) -> None:
        self.commit()
        name = next((n for n, rb in self.presets.items() if rb.isChecked()), "balanced")
        self.state.set_project(with_preset(self.state.project, "custom" if on else name, self.state.n_train()))
        self.refresh()

    def _estimates(self) -> None:
        """Each preset's label with its expected time here (needs the scan's example count)."""
        rep, p = self.state.scan_report, self.state.project
        if p.task.type.is_generative:
            self._lm_estimates(rep)
            return
        if rep is None:
            ran = self.plan_view.run_plan  # a finished run opened from disk: its own plan, not a price list
            for name, rb in self.presets.items():
                this = ran is not None and ran.get("preset") == name
                rb.setText(
                    f"{PRESET_LABELS[name]}  (this run: planned ≈ {describe_seconds(ran['total_low_s'])})"
                    if this and ran is not None
                    else PRESET_LABELS[name]
                )
            self.preset_note.setText(
                (f"This run followed preset '{ran.get('preset')}'; its plan is beside its curves. " if ran else "")
                + "Scan the data (step 1) to see how long each recipe takes on this machine."
            )
            return
        n = examples_used(rep.counts, p.data.max_per_class) if p.task.type.is_single_label else len(rep.examples)
        try:
            plans = preset_plans(p, rep)
        except TlappError:  # the plan view below says why this project cannot run
            plans = {}
        for name, rb in self.presets.items():
            pl = plans.get(name)
            low, high = (pl.total_low_s, pl.total_high_s) if pl else (0.0, 0.0)
            span = describe_seconds(low) if high - low < 5 else f"{describe_seconds(low)}–{describe_seconds(high)}"
            rb.setText(f"{PRESET_LABELS[name]}  (≈ {span})" if pl else PRESET_LABELS[name])
        measured = any(pl.measured for pl in plans.values())
        self.preset_note.setText(
            f"Times for {n:,} examples with {p.backbone.name}: "
            + (
                "measured on this machine."
                if measured
                else "a rough guess until the first run measures this machine's speed."
            )
        )

    def _append_row(self, ph: dict) -> None:
        r = self.phases.rowCount()
        self.phases.insertRow(r)
        freeze = ph["freeze"]["mode"] + (f" {ph['freeze']['blocks']}" if ph["freeze"]["mode"] == "top_blocks" else "")
        es = ph.get("early_stopping")
        exact = ph.get("solver") == "exact"
        cells = [
            ph["name"],
            "exact" if exact else str(ph["epochs"]),
            "—" if exact else f"{ph['learning_rate']:g}",
            None,
            None,
            freeze,
            "" if exact or not es else str(es["patience"]),
            None,
        ]
        for c, text in enumerate(cells):
            if text is not None:
                item = QTableWidgetItem(text)
                if c == 5 or (exact and c in (1, 2, 6)):
                    item.setFlags(item.flags() & ~Qt.ItemFlag.ItemIsEditable)
                    item.setToolTip(
                        "Edit on the Layers step (last phase) or in the project file"
                        if c == 5
                        else "Solved exactly (L-BFGS, L2 strength by cross-validation): no epochs or learning rate"
                    )
                self.phases.setItem(r, c, item)
        if exact:
            return
        sched = QComboBox()
        sched.addItems(["constant", "cosine", "step"])
        sched.setCurrentText(ph["schedule"])
        opt = QComboBox()
        opt.addItems(["adam", "adamw", "sgd", "rmsprop"])
        opt.setCurrentText(ph["optimizer"])
        flip = QCheckBox()
        flip.setChecked(bool(ph["augment"]["flip"]))
        self.phases.setCellWidget(r, 3, sched)
        self.phases.setCellWidget(r, 4, opt)
        self.phases.setCellWidget(r, 7, flip)

    def _fit_phases(self) -> None:
        """The table as tall as its rows (up to five): in the scrolling settings a table without a
        height of its own was squeezed to its header."""
        t = self.phases
        rows = sum(t.rowHeight(r) for r in range(min(t.rowCount(), 5)))
        t.setFixedHeight(t.horizontalHeader().sizeHint().height() + rows + 2 * t.frameWidth() + 2)

    def add_phase(self) -> None:
        self.commit()
        d = self.state.project.model_dump(mode="json")
        d["train"]["phases"].append(
            Phase(name=f"phase{len(d['train']['phases']) + 1}", learning_rate=1e-5, freeze={"mode": "none"}).model_dump(
                mode="json"
            )
        )
        self.state.set_dict(d)
        self.refresh()

    def remove_phase(self) -> None:
        if self.phases.rowCount() <= 1:
            return
        self.commit()
        d = self.state.project.model_dump(mode="json")
        row = self.phases.currentRow() if self.phases.currentRow() >= 0 else len(d["train"]["phases"]) - 1
        d["train"]["phases"].pop(row)
        self.state.set_dict(d)
        self.refresh()

    def commit(self) -> None:
        project = self.state.project
        if not project.train.phases and self.phases.rowCount():  # the table shows the preset's proposal
            project = with_proposed_phases(project, self.state.n_train())
        d = project.model_dump(mode="json")
        phases = d["train"]["phases"]
        for r in range(min(self.phases.rowCount(), len(phases))):
            ph = phases[r]
            ph["name"] = self.phases.item(r, 0).text().strip() or f"phase{r + 1}"
            if ph.get("solver") == "exact":
                continue
            ph["epochs"] = int(self.phases.item(r, 1).text())
            ph["learning_rate"] = float(self.phases.item(r, 2).text())
            ph["schedule"] = self.phases.cellWidget(r, 3).currentText()
            ph["optimizer"] = self.phases.cellWidget(r, 4).currentText()
            pat = self.phases.item(r, 6).text().strip() if self.phases.item(r, 6) else ""
            ph["early_stopping"] = EarlyStopping(patience=int(pat)).model_dump(mode="json") if pat else None
            ph["augment"]["flip"] = self.phases.cellWidget(r, 7).isChecked()
        d["train"]["batch_size"] = self.batch.value()
        d["train"]["strategy"] = self.strategy.currentData()
        if not self.mixed.isHidden():  # only a GPU machine shows the choice; elsewhere keep the project's value
            d["train"]["mixed_precision"] = "auto" if self.mixed.isChecked() else False
        self.state.set_dict(d)

    def validate(self) -> Optional[str]:
        for r in range(self.phases.rowCount()):
            if self.phases.cellWidget(r, 3) is None:  # an exact head solve: nothing to type
                continue
            for c, kind in ((1, int), (2, float)):
                text = self.phases.item(r, c).text() if self.phases.item(r, c) else ""
                try:
                    if kind(text) <= 0 and c == 2:
                        raise ValueError
                except ValueError:
                    return f"Phase {r + 1}: {PHASE_COLUMNS[c]} {text!r} is not a valid number"
        try:
            self.commit()
        except Exception as e:
            return str(e)
        if self.status_text == "running":
            return "Training is running; wait for it or cancel."
        if self.state.run_dir is None or not RunDir(self.state.run_dir).is_finished():
            return "Train the model first (press Start)."
        return None

    # ---- running -----------------------------------------------------------
    def new_run_dir(self) -> Path:
        """Runs live beside the project file (``runs/``), or under ``~/tlapp-projects/unsaved-runs``
        (``TLAPP_PROJECTS``) for an unsaved project."""
        parent = self.state.path.parent / "runs" if self.state.path else projects_dir() / "unsaved-runs"
        return RunDir.new(self.state.project.name, parent).root

    def start(self, resume: bool = False) -> None:
        if self.is_running():
            return
        try:
            self.commit()
            project = absolute_data_path(self.state.project, self.state.path)
        except Exception as e:
            show_error(self, str(e))
            return
        if not resume:
            self.state.run_dir = self.new_run_dir()
            self.charts.reset()
            self.log.clear()
        self.card.setVisible(False)
        self.charts_box.show_empty("Starting… (loading TensorFlow and reading your data)")
        self.trainer = self.trainer_factory()
        self.trainer.event.connect(self.on_event)
        self.trainer.finished.connect(self.on_finished)
        self.status_text = "running"
        self._set_buttons()
        self.log.appendPlainText(f"{'Resuming' if resume else 'Starting'} run in {self.state.run_dir}")
        self.trainer.start(project.model_dump_json(), self.state.run_dir, resume)

    def is_running(self) -> bool:
        return self.trainer is not None and self.status_text == "running"

    def cancel(self) -> None:
        if self.trainer is not None and self.is_running():
            self.log.appendPlainText("Cancelling… (stops after the current batch; the last checkpoint is kept)")
            self.trainer.cancel()

    def _set_buttons(self) -> None:
        running = self.status_text == "running"
        self.start_btn.setEnabled(not running)
        self.cancel_btn.setEnabled(running)
        has_ckpt = self.state.run_dir is not None and RunDir(self.state.run_dir).has_checkpoint()
        self.resume_btn.setEnabled(not running and self.status_text in ("cancelled", "failed") and has_ckpt)

    def on_event(self, ev: dict) -> None:
        self.charts.on_event(ev)
        t, d = ev["type"], ev.get("data", {})
        if t == PHASE_START:
            self.phase_info = f"phase {d['index'] + 1} '{d['name']}'"
        elif t == PROGRESS:
            self._show_progress(d)
        elif t == BATCH_END:
            self.step_progress.setVisible(False)
            self.charts_box.show_content()
            self.counters.setText(
                f"{getattr(self, 'phase_info', '')} · epoch {d['epoch']} · batch {d['batch']}/"
                f"{d['steps']} · {d['images_per_s']:.0f} examples/s"
            )
        elif t == PLAN:
            self.plan_view.on_plan_event(d)
        elif t == SOLVER_STEP:
            self.charts_box.show_content()
            self.counters.setText(
                f"{getattr(self, 'phase_info', '')} · solver iteration {d['iteration']} · "
                f"{d['per_s']:.0f} iterations/s · {d['examples_per_s']:,.0f} examples/s"
            )
        elif t == EPOCH_END and d.get("stage") == "fit":
            self.step_progress.setVisible(False)
            self.counters.setText(
                f"{getattr(self, 'phase_info', '')} · head solved in {d['seconds']:.1f}s · "
                + " · ".join(f"{k} {v:.3f}" for k, v in d["metrics"].items())
            )
        elif t == RESUME and d.get("restart"):
            self.charts.reset()  # a preset run starts again: its curves (and history.csv) start again too
        elif t == EPOCH_END and d.get("stage") == "cv":
            self.charts_box.show_content()
            self.counters.setText(
                f"{getattr(self, 'phase_info', '')} · cross-validation candidate {d['epoch']}/"
                f"{d['epochs']} (L2 {d['candidate']['l2']:g}) · {d['images_per_s']:,.0f} "
                f"examples/s fitted · ETA {d['eta_s']:.0f}s"
            )
        elif t == EPOCH_END:
            self.step_progress.setVisible(False)
            if self.charts.epoch_points() >= 2:
                self.charts_box.show_content()
            self.counters.setText(
                f"{getattr(self, 'phase_info', '')} · epoch {d['epoch']}/{d['epochs']} · "
                f"{d['images_per_s']:.0f} examples/s · ETA {d['eta_s']:.0f}s"
            )
        line = describe(t, d)
        if line is not None:
            self.log.appendPlainText(line)
        if t == RUN_END and d.get("status") == "failed" and d.get("message"):
            show_error(self, f"Training failed: {d['message']}")
        if t == CRASH:
            show_error(self, f"Training failed: {d.get('message')}", d.get("details", ""))

    def _chart_kind(self) -> None:
        """The charts for the project's task: its metric, and for DPO the rewards row."""
        task = self.state.project.task.type
        metric = metric_name(task)
        self.charts.set_metric(metric, metric.upper() if metric == "mae" else metric.replace("_", " ").capitalize())
        dpo = task.value == "dpo"
        self.charts.set_preference(dpo)
        self.charts_box.default = (
            CHARTS_BEFORE_DPO if dpo else CHARTS_BEFORE_LM if task.is_generative else CHARTS_BEFORE
        )

    def replay(self, run_dir: Path) -> None:
        """Draw a finished run's curves and log from its ``events.jsonl`` (an opened run looks as it did)."""
        self._chart_kind()
        self.charts.reset()
        self.log.clear()
        for ev in RunDir(run_dir).read_events():
            self.charts.on_event(ev)
            if ev["type"] == PLAN:
                self.plan_view.run_plan = ev.get("data")  # beside its curves, the plan the run followed
            line = describe(ev["type"], ev.get("data", {}))
            if line is not None:
                self.log.appendPlainText(line)
        if self.charts.epoch_points() >= 2:
            self.charts_box.show_content()
        else:
            self.charts_box.show_empty("This run drew no curves (it ended before its first points).")
        self._estimates()  # the preset labels speak of this run's plan, not of a scan it has not made

    def _show_progress(self, d: dict) -> None:
        """A long step that is not an epoch (scan, embedding pass, evaluation, export): a bar with
        counts, speed and time left (the event carries them), and a line saying what it is."""
        self.step_progress.setVisible(True)
        self.step_progress.setMaximum(max(d["total"], 1))
        self.step_progress.setValue(d["done"])
        stage = d["stage"]
        self.step_progress.setFormat(
            f"{stage}: " + progress_text(d["done"], d["total"], d.get("unit", ""), d.get("per_s"), d.get("eta_s"))
        )
        if stage in ("cross-validating the head", "solving the head"):
            return  # their own events set the counters (speeds, ETA, the candidate), as epochs do
        what = next((text for prefix, text in STAGE_HELP.items() if stage.startswith(prefix)), "")
        self.counters.setText(what)
        if stage.startswith("embedding") and self.charts.epoch_points() < 2:
            self.charts_box.show_empty(
                "Reading your examples through the backbone (see the progress bar above). "
                "Curves appear here if the recipe trains for several epochs."
            )

    def on_finished(self, status: str) -> None:
        self.status_text = status
        self._set_buttons()
        self.step_progress.setVisible(False)
        self.counters.setText(f"Run {status}. {self.state.run_dir}")
        if status == "completed":
            try:
                self.card.show_summary(summarize_run(self.state.run_dir))
            except Exception as e:  # the card is a convenience; the run and its files are fine
                self.log.appendPlainText(f"(could not summarise the run: {e})")
        if self.charts.epoch_points() < 2:
            self.charts_box.show_empty(f"The run {status} before its first points; nothing to chart.")
        if status == "cancelled":
            self.log.appendPlainText(
                "Cancelled: checkpoint kept; press Resume to continue."
                if self.resume_btn.isEnabled()
                else "Cancelled before any checkpoint was written; press Start to train again."
            )
        self.run_done.emit(str(self.state.run_dir), status)
        if status == "completed":
            self.state.run_finished.emit(str(self.state.run_dir))
